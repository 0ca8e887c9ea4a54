"""TorchServe handler packed into every dualserve .mar.

It speaks TF Serving's REST bodies so that one request works for both frameworks:
row (`{"instances": ...}` -> `{"predictions": ...}`) and columnar
(`{"inputs": ...}` -> `{"outputs": ...}`), plus a binary numpy body
(`application/x-npy`, answered as `.npz`) for clients that want to skip JSON, and the
gateway's tensor frames (`tensor_frames.py`, packed next to this file, recognised by
their magic). Every request of a server-side
batch is decoded, validated and answered on its own: a bad request gets a 400 with a
message naming the problem, and never fails its neighbours.

Transports:

- REST `POST /predictions/{model}[/{version}]`: the body, its Content-Type decides the
  codec. Every response carries `X-Batch-Size`, the number of requests TorchServe put
  in the server-side batch that answered it (so batching can be observed).
- gRPC `Predictions`: `PredictionsRequest.input` is a `map<string, bytes>`; dualserve
  clients put the body under the key `data` (`body` is accepted too). gRPC carries no
  Content-Type, so the body is sniffed: the `\x93NUMPY` magic means npy, else JSON.

Errors: TorchServe 0.12 returns a per-request status on REST only; its gRPC path
answers every request of a batch with OK. So a request that is alone in its batch and
fails is raised as a batch error with code 400, which reaches REST clients as HTTP 400
and gRPC clients as INVALID_ARGUMENT, each with the message. A bad request inside a
larger batch gets HTTP 400 on REST, and on gRPC an OK reply whose body is the error
object (`{"error": ..., "code": 400, ...}`), which gRPC clients must check.

This file runs inside TorchServe's worker, so it imports nothing from the dualserve
packages; the model's signature travels in the archive as `signature.json`, and
`tensor_frames.py` and `tfserving_json.py` (TF Serving's JSON format, the codec the
gateway and the bundled TF server share) as sibling modules.
"""

from __future__ import annotations

import io
import json
import logging
import os
from typing import Any

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

try:  # inside a .mar: packed next to this file, and TorchServe puts it on sys.path
    import tfserving_json
    from tensor_frames import CONTENT_TYPE as FRAME_CONTENT_TYPE
    from tensor_frames import FrameError, decode_frame, encode_frame, is_frame
except ImportError:  # imported from the source tree (tests)
    from wire import tfserving_json
    from wire.tensor_frames import CONTENT_TYPE as FRAME_CONTENT_TYPE
    from wire.tensor_frames import FrameError, decode_frame, encode_frame, is_frame

logger = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"
NPY_CONTENT_TYPE = "application/x-npy"
JSON_CONTENT_TYPE = "application/json"
NPY_MAGIC = b"\x93NUMPY"
BODY_KEYS = ("body", "data")
"""Where the request body travels: REST puts it under "body" (or "data" for forms);
gRPC clients put it under "data" in `PredictionsRequest.input` ("body" works too)."""
BATCH_SIZE_HEADER = "X-Batch-Size"
_RESPONSE_TYPES = {
    "frame": FRAME_CONTENT_TYPE,
    "npy": "application/x-npz",
    "row": JSON_CONTENT_TYPE,
    "columnar": JSON_CONTENT_TYPE,
}


class InputError(ValueError):
    """A request the handler rejects with HTTP 400; the message names the problem."""


class Signature:
    """The model's input contract: one tensor `name`, float32, per-example `shape`."""

    def __init__(self, name: str, shape: list[int], dtype: str = "float32") -> None:
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)

    @classmethod
    def from_file(cls, path: str) -> Signature:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)["inputs"][0]
        return cls(spec["name"], spec["shape"][1:], spec.get("dtype", "float32"))

    def check(self, array: np.ndarray) -> np.ndarray:
        if array.ndim != len(self.shape) + 1 or tuple(array.shape[1:]) != self.shape:
            expected = [-1, *self.shape]
            raise InputError(f"{self.name}: expected shape {expected}, got {list(array.shape)}")
        return array


def decode_request(body: Any, content_type: str, signature: Signature) -> tuple[np.ndarray, str]:
    """Turn one request body into a float32 batch and the response format to answer in.

    A body that starts with the npy magic is npy whatever its Content-Type (gRPC sends
    none, and no JSON text can start with that byte).
    """
    if isinstance(body, (bytes, bytearray)) and is_frame(body):
        return signature.check(_decode_frame(body, signature)), "frame"
    if content_type.startswith(NPY_CONTENT_TYPE) or _is_npy(body):
        return signature.check(_decode_npy(body, signature)), "npy"
    return _decode_json(body, signature)


def _decode_json(body: Any, signature: Signature) -> tuple[np.ndarray, str]:
    """TF Serving's JSON (row or columnar) through the shared codec."""
    with tfserving_json.errors_as(InputError):
        payload = tfserving_json.parse_predict(_as_json(body))
        values = tfserving_json.named_values(payload, [signature.name])
    unknown = sorted(set(values) - {signature.name})
    if unknown:
        raise InputError(f"unknown input '{unknown[0]}'; the model takes '{signature.name}'")
    if signature.name not in values:
        raise InputError(f"the request has no input named '{signature.name}'")
    with tfserving_json.errors_as(InputError):
        array = tfserving_json.to_array(values[signature.name], signature.name, signature.dtype)
    return signature.check(array), "row" if payload.row_format else "columnar"


def _is_npy(body: Any) -> bool:
    return isinstance(body, (bytes, bytearray)) and bytes(body[: len(NPY_MAGIC)]) == NPY_MAGIC


def _as_json(body: Any) -> Any:
    """TorchServe hands JSON bodies over parsed (its json.loads reads NaN too), gRPC
    bodies as bytes."""
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return tfserving_json.loads(body)
        except tfserving_json.JsonFormatError as exc:
            raise InputError(f"malformed JSON body: {exc}") from exc
    return body


def _decode_frame(body: bytes | bytearray, signature: Signature) -> np.ndarray:
    try:
        tensors = decode_frame(body)
    except FrameError as exc:
        raise InputError(str(exc)) from exc
    if signature.name not in tensors:
        raise InputError(f"the frame has no tensor named '{signature.name}'")
    return _check_dtype(tensors[signature.name], signature)


def _check_dtype(array: np.ndarray, signature: Signature) -> np.ndarray:
    if array.dtype != signature.dtype:
        raise InputError(
            f"{signature.name}: expected dtype {signature.dtype.name}, got {array.dtype.name}"
        )
    return array


def _decode_npy(body: Any, signature: Signature) -> np.ndarray:
    if not isinstance(body, (bytes, bytearray)):
        raise InputError(f"{NPY_CONTENT_TYPE} body must be binary")
    try:
        array = np.load(io.BytesIO(bytes(body)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"body is not a valid .npy array: {exc}") from exc
    return _check_dtype(array, signature)


def encode_response(outputs: dict[str, np.ndarray], fmt: str) -> Any:
    """TF Serving's response shapes (row -> predictions, columnar -> outputs), npz or a frame."""
    if fmt == "frame":
        return encode_frame(outputs)
    if fmt == "npy":
        return _encode_npz(outputs)
    return tfserving_json.encode_predict(outputs, row_format=fmt == "row")


def _encode_npz(outputs: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **outputs)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return buffer.getvalue()


class DualserveHandler(BaseHandler):
    """Decode every request of a batch, run one forward pass, answer each request."""

    def initialize(self, context: Any) -> None:
        threads = int(os.environ.get("DUALSERVE_TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        super().initialize(context)
        model_dir = context.system_properties.get("model_dir")
        self.signature = Signature.from_file(os.path.join(model_dir, SIGNATURE_FILE))

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        decoded: list[tuple[int, np.ndarray, str]] = []
        responses: list[Any] = [None] * len(data)
        for idx, request in enumerate(data):
            _set_header(context, idx, BATCH_SIZE_HEADER, str(len(data)))
            try:
                batch, fmt = decode_request(
                    _body(request), _content_type(context, idx), self.signature
                )
            except InputError as exc:
                if len(data) == 1:
                    # Alone in its batch: a batch error is the only 4xx gRPC can carry.
                    raise PredictionException(str(exc), 400) from exc
                responses[idx] = _error(context, idx, 400, str(exc))
                continue
            decoded.append((idx, batch, fmt))
        if decoded:
            self._infer_and_split(decoded, responses, context)
        return responses

    def _infer_and_split(
        self, decoded: list[tuple[int, np.ndarray, str]], responses: list[Any], context: Any
    ) -> None:
        merged = np.concatenate([batch for _, batch, _ in decoded])
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(merged).to(self.device))
        arrays = {name: tensor.cpu().numpy() for name, tensor in outputs.items()}
        start = 0
        for idx, batch, fmt in decoded:
            part = {name: value[start : start + len(batch)] for name, value in arrays.items()}
            start += len(batch)
            context.set_response_content_type(idx, _RESPONSE_TYPES[fmt])
            responses[idx] = encode_response(part, fmt)


def _body(request: dict[str, Any]) -> Any:
    for key in BODY_KEYS:
        if request.get(key) is not None:
            return request[key]
    names = sorted(str(key) for key in request)
    raise InputError(f"request has no body; send it under 'data' (gRPC input keys: {names})")


def _content_type(context: Any, idx: int) -> str:
    value = context.get_request_header(idx, "Content-Type") or context.get_request_header(
        idx, "content-type"
    )
    return (value or JSON_CONTENT_TYPE).lower()


def _set_header(context: Any, idx: int, key: str, value: str) -> None:
    setter = getattr(context, "set_response_header", None)
    if setter is not None:  # fakes in unit tests may not have it
        setter(idx, key, value)


def _error(context: Any, idx: int, status: int, message: str) -> str:
    """A per-request error: TorchServe's error shape plus TF Serving's `error` key."""
    context.set_response_status(status, _reason_phrase(message), idx)
    context.set_response_content_type(idx, JSON_CONTENT_TYPE)
    return json.dumps({"code": status, "type": "InputError", "message": message, "error": message})


def _reason_phrase(message: str, limit: int = 200) -> str:
    """The HTTP status line carries the message too: one printable ASCII line."""
    text = "".join(ch if " " <= ch <= "~" else " " for ch in message)
    return text[:limit]


_service = DualserveHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    """TorchServe's module-level entry point."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
