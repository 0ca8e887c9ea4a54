"""Request and answer bodies of the REST-style backends: numpy files and columnar JSON.

Decoding problems become `UpstreamError`: a backend that answers 200 with a body we
cannot read is the backend's (or the gateway's) fault, never the client's.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from gateway.errors import BadRequest, UpstreamError, UpstreamRejected
from gateway.types import InferRequest
from gateway.upstreams.failures import Target

NPY = "application/x-npy"


def npy_body(array: np.ndarray) -> bytes:
    """One array as an `.npy` file (what the dualserve TorchServe handler reads)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def single_input(request: InferRequest) -> np.ndarray:
    """The one input tensor the dualserve handler takes (the serving contract's `input`)."""
    if len(request.inputs) != 1:
        names = ", ".join(sorted(request.inputs)) or "none"
        raise BadRequest(f"the pytorch backend takes exactly one input tensor, got {names}")
    return next(iter(request.inputs.values()))


def npz_outputs(body: bytes, target: Target) -> dict[str, np.ndarray]:
    """The named arrays of an `.npz` answer."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UpstreamError(target.backend, f"{target}: unreadable .npz answer ({exc})") from exc


def columnar_json(inputs: Mapping[str, np.ndarray], signature_name: str | None = None) -> bytes:
    """TF Serving's columnar request body, `{"inputs": {...}, "signature_name"?}`."""
    payload: dict[str, Any] = {"inputs": dict(inputs)}
    if signature_name:
        payload["signature_name"] = signature_name
    # orjson writes numpy arrays natively; other dtypes fall back to lists.
    return orjson.dumps(payload, default=_to_list, option=orjson.OPT_SERIALIZE_NUMPY)


def columnar_outputs(body: bytes, names: list[str], target: Target) -> dict[str, np.ndarray]:
    """Named arrays from `{"outputs": {...}}` (or TF Serving's bare single output).

    JSON carries no dtype: floats come back float32 (the serving contract's float type)
    and integers int64, which is what TF Serving and the handler produced them from.
    """
    try:
        outputs = orjson.loads(body)["outputs"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
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


def _to_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
