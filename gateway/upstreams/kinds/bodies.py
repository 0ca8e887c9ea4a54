"""Request and answer bodies of the REST-style backends: tensor frames and columnar JSON.

Decoding problems become `UpstreamError`: a backend that answers 200 with a body we
cannot read is the backend's (or the gateway's) fault, never the client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from wire import tfserving_json
from wire.tensor_frames import FrameError, decode_frame, encode_frame
from gateway.core.errors import UpstreamError, UpstreamRejected
from gateway.core.types import InferRequest
from gateway.upstreams.failures import Target


def frame_body(request: InferRequest) -> bytes:
    """The request's named tensors as one tensor frame (what the dualserve handler reads
    fastest; see wire/tensor_frames.py)."""
    return encode_frame(request.inputs)


def frame_outputs(body: bytes, target: Target) -> dict[str, np.ndarray]:
    """The named arrays of a tensor-frame answer."""
    try:
        return decode_frame(body)
    except FrameError as exc:
        raise UpstreamError(target.backend, f"{target}: unreadable answer ({exc})") from exc


def columnar_json(inputs: Mapping[str, np.ndarray], signature_name: str | None = None) -> bytes:
    """TF Serving's columnar request body, `{"inputs": {...}, "signature_name"?}`."""
    payload: dict[str, Any] = {"inputs": {k: _jsonable(v) for k, v in inputs.items()}}
    if signature_name:
        payload["signature_name"] = signature_name
    return tfserving_json.dumps(payload)


def columnar_outputs(body: bytes, names: list[str], target: Target) -> dict[str, np.ndarray]:
    """Named arrays from `{"outputs": {...}}` (or TF Serving's bare single output).

    JSON carries no dtype: floats come back float32 (the serving contract's float type)
    and integers int64, which is what TF Serving and the handler produced them from.
    """
    try:
        outputs = tfserving_json.loads(body)["outputs"]
    except (tfserving_json.JsonFormatError, KeyError, TypeError) as exc:
        raise UpstreamError(target.backend, f"{target}: unreadable JSON answer ({exc})") from exc
    if not isinstance(outputs, dict):  # TF Serving drops the name of a lone output
        outputs = {names[0] if len(names) == 1 else "outputs": outputs}
    return {name: _json_array(value) for name, value in outputs.items()}


def select_outputs(
    outputs: dict[str, np.ndarray], names: list[str], target: Target
) -> dict[str, np.ndarray]:
    """Only the requested outputs (all when `names` is empty), as TF Serving's filter does."""
    unknown = [name for name in names if name not in outputs]
    if unknown:
        known = ", ".join(sorted(outputs))
        raise UpstreamRejected(
            target.backend, f"{target} has no output '{unknown[0]}' (it returns {known})"
        )
    return {name: outputs[name] for name in names} if names else outputs


def _json_array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array


def _jsonable(value: np.ndarray) -> Any:
    """Numbers stay numpy (the codec writes them natively); other tensors as lists."""
    return value if value.dtype.kind in "biuf" else value.tolist()
