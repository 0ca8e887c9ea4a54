"""TorchServe over REST: `POST /predictions/{model}[/{version}]` with a tensor frame,
readiness by `GET /ping`.

The dualserve handler answers a tensor frame with one of the named outputs, so tensors
cross without JSON. TorchServe does not report the version that ran.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from wire.tensor_frames import CONTENT_TYPE as FRAME
from gateway.core.types import Framework, InferRequest
from gateway.upstreams.kinds.bodies import frame_body, frame_outputs
from gateway.upstreams.failures import Target
from gateway.upstreams.pooled import Decoded
from gateway.upstreams.transports.rest_session import RestCall
from gateway.upstreams.torchserve_token import TokenSource


class TorchServeRest:
    """TorchServe's inference API bodies (a `Codec` for `PooledUpstream` over `RestWire`).

    Args:
        token: the inference key's source (`TokenSource()` = no authorization).
    """

    framework: Framework = "pytorch"

    def __init__(self, token: TokenSource | None = None) -> None:
        self.token = token or TokenSource()

    def encode(self, request: InferRequest) -> RestCall:
        headers = {
            "Content-Type": FRAME,
            "X-Request-Id": request.request_id,
            **self.token.headers(),
        }
        path = predictions_path(request.model, request.version)
        return RestCall("POST", path, frame_body(request), headers)

    def decode(self, answer: bytes, request: InferRequest, target: Target) -> Decoded:
        return Decoded(frame_outputs(answer, target))

    def probe(self, model: str) -> RestCall:
        """`GET /ping` (the server's health, not the model's)."""
        return RestCall("GET", "/ping", headers=self.token.headers())

    def is_ready(self, answer: bytes) -> bool:
        return b"Healthy" in answer


@lru_cache(maxsize=1024)  # a few models and versions: quoting is most of the work
def predictions_path(model: str, version: int | None) -> str:
    path = f"/predictions/{quote(model, safe='')}"
    return path if version is None else f"{path}/{version}"
