"""TF Serving's REST predict bodies: row (`instances`) and columnar (`inputs`) formats.

Decoding yields named numpy tensors; encoding answers in the format the client used
(`predictions` for row, `outputs` for columnar), as TF Serving does.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from gateway.errors import BadRequest


def decode_predict(body: Any, input_names: list[str]) -> tuple[dict[str, np.ndarray], str]:
    """(named tensors, "row" | "columnar") from a parsed JSON body."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest(
            "request must have exactly one of 'instances' (row) or 'inputs' (columnar)"
        )
    if "instances" in body:
        return _rows(body["instances"], input_names), "row"
    return _columns(body["inputs"], input_names), "columnar"


def _rows(instances: Any, input_names: list[str]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        keys = set(instances[0])
        if any(set(row) != keys for row in instances):
            raise BadRequest("every object in 'instances' must have the same named inputs")
        return {name: _array([row[name] for row in instances], name) for name in keys}
    if len(input_names) != 1:
        raise BadRequest(f"'instances' must be objects naming the inputs {input_names}")
    return {input_names[0]: _array(instances, input_names[0])}


def _columns(inputs: Any, input_names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        return {name: _array(value, name) for name, value in inputs.items()}
    if len(input_names) != 1:
        raise BadRequest(f"'inputs' must be an object naming the inputs {input_names}")
    return {input_names[0]: _array(inputs, input_names[0])}


def _array(values: Any, name: str) -> np.ndarray:
    values = _decode_b64(values)
    try:
        array = np.asarray(values)
    except ValueError as exc:
        raise BadRequest(f"input '{name}': ragged or malformed tensor ({exc})") from None
    if array.dtype == object:
        raise BadRequest(f"input '{name}': ragged or mixed-type tensor")
    return array


def _decode_b64(values: Any) -> Any:
    """`{"b64": "..."}` leaves become bytes, anywhere in the nesting."""
    if isinstance(values, dict):
        if set(values) == {"b64"}:
            try:
                return base64.b64decode(values["b64"], validate=True)
            except (ValueError, TypeError):
                raise BadRequest("invalid base64 in a {'b64': ...} value") from None
        raise BadRequest("tensor values must be numbers, lists or {'b64': ...} objects")
    if isinstance(values, list) and values and isinstance(values[0], (list, dict)):
        return [_decode_b64(v) for v in values]
    return values


def encode_predict(outputs: dict[str, np.ndarray], fmt: str) -> dict[str, Any]:
    """TF Serving's answer: one output -> plain values; several -> named objects per row."""
    if fmt == "columnar":
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    columns = {name: value.tolist() for name, value in outputs.items()}
    rows = len(next(iter(columns.values())))
    return {"predictions": [{name: col[i] for name, col in columns.items()} for i in range(rows)]}
