"""Open Inference Protocol v2 (KServe v2 / Triton) JSON tensors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gateway.errors import BadRequest

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


def datatype_of(dtype: np.dtype) -> str:
    return _NAMES.get(np.dtype(dtype), "BYTES")


def decode_infer(body: Any) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """(named tensors, requested outputs, parameters) from a parsed v2 request."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest("request must be an object with a non-empty 'inputs' list")
    tensors = dict(_tensor(spec, i) for i, spec in enumerate(body["inputs"]))
    outputs = body.get("outputs") or []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and "name" in o for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    return tensors, [o["name"] for o in outputs], parameters


def _tensor(spec: Any, index: int) -> tuple[str, np.ndarray]:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise BadRequest(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype", "data"):
        if key not in spec:
            raise BadRequest(f"{where} is missing '{key}'")
    name, datatype = spec["name"], spec["datatype"]
    if datatype not in DATATYPES:
        raise BadRequest(f"input '{name}': unsupported datatype '{datatype}'")
    shape = spec["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of non-negative integers")
    try:
        flat = np.asarray(spec["data"], dtype=DATATYPES[datatype]).reshape(-1)
    except (ValueError, TypeError):
        raise BadRequest(f"input '{name}': 'data' is not a {datatype} tensor") from None
    if flat.size != math.prod(shape):
        raise BadRequest(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, got {flat.size}"
        )
    return name, flat.reshape(shape)


def encode_infer(
    model: str, version: int, request_id: str, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    return {
        "model_name": model,
        "model_version": str(version),
        "id": request_id,
        "outputs": [
            {
                "name": name,
                "datatype": datatype_of(value.dtype),
                "shape": list(value.shape),
                "data": _data(value),
            }
            for name, value in outputs.items()
        ],
    }


def _data(value: np.ndarray) -> Any:
    """Numbers stay numpy (float32 written as float32, NaN as `NaN`); strings as lists."""
    flat = value.reshape(-1)
    return flat if flat.dtype.kind in "biuf" else flat.tolist()
