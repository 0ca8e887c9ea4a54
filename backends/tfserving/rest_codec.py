"""TF Serving's REST JSON, to and from numpy: request bodies, predictions, status.

Row format (`instances`) and columnar format (`inputs`), `{"b64": ...}` for binary
strings, TF Serving's response shapes. Conversion is one vectorised `np.asarray` per
input; only string tensors (b64) walk their values in Python.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from backends.tfserving.errors import InvalidArgument
from backends.tfserving.manager import VersionStatus
from backends.tfserving.signature import SignatureInfo, TensorInfo, check_input_names

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# Which numpy kinds of parsed JSON may feed a tensor of each target kind.
_ACCEPTED_KINDS = {"f": "biuf", "i": "biu", "u": "biu", "b": "b", "c": "biufc"}


@dataclass(frozen=True)
class PredictBody:
    """A parsed `:predict` body: row (`instances`) or columnar (`inputs`) payload."""

    signature_name: str
    payload: Any
    row_format: bool


def parse_predict_body(raw: bytes) -> PredictBody:
    """Parse and shape-check the JSON body; tensors are converted later, per signature."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"JSON Parse error: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("JSON Value: request body must be a JSON object")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise InvalidArgument(
            "Missing 'inputs' or 'instances' key"
            if not has_rows
            else "Not both 'instances' and 'inputs' may be given; use one of them"
        )
    signature = body.get("signature_name", "")
    if not isinstance(signature, str):
        raise InvalidArgument("'signature_name' must be a string")
    payload = body["instances"] if has_rows else body["inputs"]
    if has_rows and not isinstance(payload, list):
        raise InvalidArgument("Expecting 'instances' to be a list/array")
    if has_rows and not payload:
        raise InvalidArgument("'instances' is an empty list")
    return PredictBody(signature, payload, has_rows)


def decode_inputs(body: PredictBody, sig: SignatureInfo) -> dict[str, np.ndarray]:
    """The body's tensors as numpy arrays of the signature's dtypes."""
    if body.row_format:
        values = _row_values(body.payload, sig)
    else:
        values = _column_values(body.payload, sig)
    check_input_names(sig, values)
    return {name: to_array(value, sig.inputs[name]) for name, value in values.items()}


def _row_values(instances: list[Any], sig: SignatureInfo) -> dict[str, Any]:
    named = isinstance(instances[0], dict) and "b64" not in instances[0]
    if not named:
        if len(sig.inputs) != 1:
            raise InvalidArgument(
                "Expecting each element of 'instances' to be an object with the named "
                f"inputs {sorted(sig.inputs)} (the signature has several inputs)"
            )
        return {next(iter(sig.inputs)): instances}
    names = list(instances[0])
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(names):
            raise InvalidArgument(
                f"Failed to process element: {index} of 'instances' list. "
                f"Error: every instance must be an object with the keys {sorted(names)}"
            )
    return {name: [instance[name] for instance in instances] for name in names}


def _column_values(inputs: Any, sig: SignatureInfo) -> dict[str, Any]:
    if isinstance(inputs, dict) and "b64" not in inputs:
        return dict(inputs)
    if len(sig.inputs) != 1:
        raise InvalidArgument(
            f"'inputs' must be an object with the named inputs {sorted(sig.inputs)}"
        )
    return {next(iter(sig.inputs)): inputs}


def to_array(value: Any, info: TensorInfo) -> np.ndarray:
    """One JSON value as a tensor of `info`'s dtype; errors name the input and dtype."""
    if info.dtype.kind in "OSU":
        return _string_array(value, info)
    try:
        parsed = np.asarray(value)
    except ValueError:
        raise InvalidArgument(
            f"input '{info.name}': values do not form a rectangular tensor "
            f"(rows of different lengths); expected shape {info.describe_shape()}"
        ) from None
    accepted = _ACCEPTED_KINDS.get(info.dtype.kind, info.dtype.kind)
    if parsed.dtype.kind not in accepted:
        raise InvalidArgument(
            f"input '{info.name}': expected {info.tf_dtype} ({info.dtype}) values "
            f"but received {_json_kind(parsed)}"
        )
    return parsed.astype(info.dtype, copy=False)


def _json_kind(parsed: np.ndarray) -> str:
    names = {"U": "strings", "b": "booleans", "f": "floating-point numbers", "O": "objects"}
    return names.get(parsed.dtype.kind, str(parsed.dtype))


def _string_array(value: Any, info: TensorInfo) -> np.ndarray:
    decoded = _decode_strings(value, info.name)
    array = np.empty(np.shape(decoded) if isinstance(decoded, list) else (), dtype=object)
    try:
        array[...] = decoded
    except ValueError:
        raise InvalidArgument(
            f"input '{info.name}': values do not form a rectangular tensor"
        ) from None
    return array


def _decode_strings(value: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_decode_strings(v, name) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError):
            raise InvalidArgument(
                f"input '{name}': JSON Value not formatted correctly for base64 data"
            ) from None
    if isinstance(value, str):
        return value.encode()
    raise InvalidArgument(
        f"input '{name}': expected strings or {{\"b64\": ...}} objects, got {value!r}"
    )


def encode_predictions(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """TF Serving's response: `predictions` (row) or `outputs` (columnar)."""
    jsonable = {name: _jsonable(name, value) for name, value in outputs.items()}
    if not row_format:
        body: Any = next(iter(jsonable.values())) if len(jsonable) == 1 else jsonable
        return orjson.dumps({"outputs": body}, option=_JSON_OPTIONS)
    if len(jsonable) == 1:
        return orjson.dumps({"predictions": next(iter(jsonable.values()))}, option=_JSON_OPTIONS)
    rows = _batch_rows(outputs)
    names = list(jsonable)
    predictions = [{name: jsonable[name][i] for name in names} for i in range(rows)]
    return orjson.dumps({"predictions": predictions}, option=_JSON_OPTIONS)


def _batch_rows(outputs: Mapping[str, np.ndarray]) -> int:
    sizes = {name: value.shape[0] if value.ndim else -1 for name, value in outputs.items()}
    distinct = set(sizes.values())
    if len(distinct) != 1 or -1 in distinct:
        raise InvalidArgument(
            f"Tensor batch sizes differ or are missing across outputs {sizes}; "
            "use the columnar format ('inputs') for this signature"
        )
    return int(distinct.pop())


def _jsonable(name: str, value: np.ndarray) -> Any:
    if value.dtype.kind not in "OSU":
        return np.ascontiguousarray(value)
    as_b64 = name.endswith("_bytes")
    return _strings_to_json(value.tolist(), as_b64)


def _strings_to_json(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings_to_json(v, as_b64) for v in value]
    if isinstance(value, bytes):
        if as_b64:
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", errors="replace")
    return value


def encode_status(statuses: Sequence[VersionStatus]) -> bytes:
    """GetModelStatus as TF Serving's REST API prints it."""
    body = {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state,
                "status": {"error_code": s.error_code, "error_message": s.error_message},
            }
            for s in statuses
        ]
    }
    return orjson.dumps(body)


def encode_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)
