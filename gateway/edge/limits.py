"""Request limits, checked in the places every ingress already goes through.

- JSON nesting depth: where JSON bodies are parsed (`protocols.http.json_body`), on the
  raw bytes, before any decoding.
- Batch size and elements per tensor: in request validation (`catalog.validate`), which
  REST and gRPC, TF Serving and Open Inference Protocol requests all pass; a TensorProto
  that would fill a large shape from one value is refused while decoding, before the
  allocation (`codecs.tensorproto`).
- Body size: `max_body_bytes`, checked while the body is read (`read_body`, 413: a
  declared length at once, a chunked body as soon as it passes the limit, so it is never
  buffered whole) and by gRPC itself (`grpc.max_receive_message_length`,
  RESOURCE_EXHAUSTED).

Each refusal is a 400 (INVALID_ARGUMENT) whose message names the setting, as TF Serving
names its `max_batch_size`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from starlette.requests import ClientDisconnect

from gateway.core.errors import BadRequest, PayloadTooLarge
from gateway.core.types import InferRequest
from gateway.edge.security_settings import LimitsSettings

if TYPE_CHECKING:
    from starlette.requests import Request

_DROP = bytes(c for c in range(256) if c not in b'[]{}"')
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


_COUNTED = 4096
"""Bodies up to this size are first counted for brackets, which for a single-row body (1.3
KB) costs less than `_structure` (1.1 against 2 us); a larger body goes straight to
`_structure`, which it needs anyway (a 64-row body of 83 KB: 50 -> 39 us per check)."""


def _structure(raw: bytes) -> bytes:
    """The brackets of a JSON text outside its strings, e.g. b'{[[][]]}'.

    Escaped backslashes and quotes go first (so every remaining quote opens or closes a
    string), then everything but brackets and quotes (`bytes.translate`, one pass in C),
    then what lies between quotes. A tensor body keeps a few bytes per row.
    """
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = raw.translate(None, _DROP)
    return b"".join(kept.split(b'"')[::2]) if b'"' in kept else kept


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a well-formed JSON text (0 for a
    scalar), e.g. 3 for `{"instances": [[1, 2]]}`."""
    return _depth(_structure(raw))


def _depth(structure: bytes) -> int:
    brackets = np.frombuffer(structure, np.uint8)
    return int(np.cumsum(_STEP[brackets], dtype=np.int64).max(initial=0))


def check_json_depth(raw: bytes, limits: LimitsSettings) -> None:
    """Raises BadRequest naming `limits.max_json_depth` when the parsed body `raw` nests
    deeper. Costs a pass or two in C over the body plus work per bracket (measured: a
    fraction of the orjson parse it follows)."""
    if len(raw) <= _COUNTED and raw.count(b"[") + raw.count(b"{") <= limits.max_json_depth:
        return  # cannot nest deeper than it has brackets (a small body: no more work)
    structure = _structure(raw)
    depth = _depth(structure)
    if depth > limits.max_json_depth:
        raise BadRequest(
            f"JSON body nests {depth} levels deep, more than the limit of"
            f" {limits.max_json_depth} (limits.max_json_depth)"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with PayloadTooLarge (413) once it passes `limit` bytes:
    by its Content-Length before reading, else while the chunks arrive.

    Reads the ASGI messages itself: `Request.body()` costs 4 us per request (an async
    generator under `aclosing`), this loop 1 us (measured under uvloop).

    Raises:
        PayloadTooLarge: the declared or received body passes `limit` bytes.
        ClientDisconnect: the client left before its body ended.
    """
    _check_declared_length(request, limit)
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes (max_body_bytes)"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_declared_length(request: Request, limit: int) -> None:
    headers = request.headers
    declared = headers.get("content-length")
    if declared is None or not declared.isdigit() or "transfer-encoding" in headers:
        return  # chunked: checked while it arrives
    if int(declared) > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes exceeds the limit of {limit} (max_body_bytes)"
        )


def check_tensors(request: InferRequest, limits: LimitsSettings) -> None:
    """Raises BadRequest naming the limit when an input has more rows than
    `max_batch_size` or more values than `max_tensor_elements`."""
    for name, array in request.inputs.items():
        if array.size > limits.max_tensor_elements:
            raise BadRequest(
                f"input '{name}' holds {array.size} values, more than the limit of"
                f" {limits.max_tensor_elements} (limits.max_tensor_elements)"
            )
        if array.ndim and array.shape[0] > limits.max_batch_size:
            raise BadRequest(
                f"input '{name}' has a batch of {array.shape[0]}, more than the limit of"
                f" {limits.max_batch_size} (limits.max_batch_size)"
            )


def check_request_id(value: str, limits: LimitsSettings, where: str) -> str:
    """`value` when it can travel back as a header: at most `limits.max_request_id_length`
    characters (proxies and clients cap headers at 8-64 KiB) of printable ASCII (an HTTP
    field value without control characters, RFC 9110 section 5.5; gRPC's ASCII metadata
    values, PROTOCOL-HTTP2 "Custom-Metadata"), so a CR/LF or a non-Latin-1 id cannot break
    the reply's headers.

    Raises:
        BadRequest: naming `where` and the limit it broke.
    """
    if len(value) > limits.max_request_id_length:
        raise BadRequest(
            f"{where} holds {len(value)} characters, more than the limit of"
            f" {limits.max_request_id_length} (limits.max_request_id_length)"
        )
    if not (value.isascii() and value.isprintable()):
        raise BadRequest(
            f"{where} must be printable ASCII (it is echoed in the X-Request-Id header)"
        )
    return value
