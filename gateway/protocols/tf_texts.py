"""TF Serving's own error texts, for the TF Serving ingresses (REST and gRPC).

A TF Serving client may match on these sentences, so the gateway answers in them where the
same fault reaches it. Sources: TF Serving's `ServerCore` and `http_rest_api_handler.cc`,
mirrored by the bundled server (`backends/tfserving/server/errors.py`, `signature.py`,
`rest.py`):

- a version the model lacks: NOT_FOUND "Servable not found for request: Specific(m, v)"
  (predict, metadata), "Could not find version v of model m" (GetModelStatus);
- a REST path whose version is not a decimal number matches none of TF Serving's URL
  patterns: 404 "Malformed request: POST /v1/models/m/versions/abc:predict";
- an `output_filter` name outside the signature: INVALID_ARGUMENT "output tensor alias not
  found in signature: x Outputs expected to be in the set {a,b}.".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from starlette.requests import Request

from gateway.catalog import ModelInfo
from gateway.core.errors import BadRequest, NotFound

Api = Literal["predict", "status"]


def rest_version(request: Request, text: str) -> int:
    """The version of a REST path (`0` included: TF Serving's pattern is `\\d+`).

    Raises:
        NotFound: not a decimal number, in TF Serving's "Malformed request" words.
    """
    if not text.isascii() or not text.isdigit():
        raise NotFound(f"Malformed request: {request.method} {request.url.path}")
    return int(text)


def resolve(info: ModelInfo, version: int | None, label: str | None, api: Api = "predict") -> int:
    """`info.resolve_version`, a missing version answered in TF Serving's words for `api`.

    Raises:
        NotFound: the version is not served.
        BadRequest: an unknown label (TF Serving's words already).
    """
    if label is None and version is not None and version not in info.versions:
        if api == "status":
            raise NotFound(f"Could not find version {version} of model {info.name}")
        raise NotFound(f"Servable not found for request: Specific({info.name}, {version})")
    return info.resolve_version(version, label)


def check_output_filter(info: ModelInfo, names: Iterable[str]) -> None:
    """Every `output_filter` name is an output of the signature.

    Raises:
        BadRequest: the first one that is not, in TF Serving's words.
    """
    outputs = ",".join(sorted(info.output_names))
    for name in names:
        if name not in info.output_names:
            raise BadRequest(
                f"output tensor alias not found in signature: {name} "
                f"Outputs expected to be in the set {{{outputs}}}."
            )
