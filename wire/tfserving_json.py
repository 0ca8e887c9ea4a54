"""TF Serving's REST JSON format: the one parser and writer every dualserve side shares.

Used by the gateway's TF Serving REST ingress and upstream, the bundled TF Serving server
(`backends/tfserving/server/rest_codec.py`) and the TorchServe handler, which packs this file and
`json_text.py` (the JSON text: NaN/Infinity tokens, float32 written as float32) next to
itself in every .mar; so both import only the standard library and numpy.

It follows TF Serving's "RESTful API" guide ("Request format", "Response format",
"Encoding binary values"): row format `{"instances": [...]}` answered as
`{"predictions": ...}`, columnar `{"inputs": ...}` answered as `{"outputs": ...}` (a
lone output loses its name), `{"b64": "..."}` for binary strings (outputs named
`*_bytes` are written so). Every problem raises `JsonFormatError` (a `ValueError`) in TF
Serving's words where it has some; each side maps it to its own error (`errors_as`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # inside a .mar: a sibling module (TorchServe puts the model directory on sys.path)
    from json_text import JsonFormatError, dumps, loads
except ImportError:  # imported from the source tree
    from wire.json_text import JsonFormatError, dumps, loads

__all__ = ["JsonFormatError", "PredictBody", "dumps", "loads"]

TF_DTYPES = {
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "bool": "DT_BOOL",
    "object": "DT_STRING",
}
"""numpy dtype name -> TF Serving's DataType name (metadata and error messages)."""
SIGNATURE_METHODS = {
    "predict": "tensorflow/serving/predict",
    "classify": "tensorflow/serving/classify",
    "regress": "tensorflow/serving/regress",
}
"""The `method_name` a signature must have for each REST API (`:predict`, ...)."""
_API_KINDS = {"classify": "classification", "regress": "regression"}
_ACCEPTED_KINDS = {"f": "biuf", "i": "biu", "u": "biu", "b": "b", "c": "biufc"}
_KIND_NAMES = {"U": "strings", "b": "booleans", "f": "floating-point numbers", "O": "objects"}


@contextmanager
def errors_as(error_type: Callable[[str], Exception]) -> Iterator[None]:
    """Re-raise this codec's errors as `error_type(message)`: each side's own boundary."""
    try:
        yield
    except JsonFormatError as exc:
        raise error_type(str(exc)) from None


@dataclass(frozen=True)
class PredictBody:
    """A parsed `:predict` body.

    Attributes:
        signature_name: the requested signature ('' = serving_default).
        payload: the value of `instances` (row format) or `inputs` (columnar format).
        row_format: True for `instances`, False for `inputs`.
        parameters: every other top-level key, `signature_name` included.
    """

    signature_name: str
    payload: Any
    row_format: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def load_object(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """`loads` for a body that must be a JSON object (every TF Serving REST body).

    Raises:
        JsonFormatError: not JSON, or not an object.
    """
    document = loads(raw)
    _check_object(document)
    return document  # type: ignore[no-any-return]


def _check_object(document: Any) -> None:
    if not isinstance(document, dict):
        raise JsonFormatError("JSON Value: request body must be a JSON object")


def parse_predict(document: Any) -> PredictBody:
    """Check a parsed `:predict` body's shape; tensors are converted later (`to_array`).

    Raises:
        JsonFormatError: not an object, neither or both of `instances`/`inputs`, a
            non-list or empty `instances`, a non-string `signature_name`.
    """
    _check_object(document)
    has_rows, has_columns = "instances" in document, "inputs" in document
    if has_rows == has_columns:
        raise JsonFormatError(
            "Missing 'inputs' or 'instances' key"
            if not has_rows
            else "Not both 'instances' and 'inputs' may be given; use one of them"
        )
    signature = document.get("signature_name", "")
    if not isinstance(signature, str):
        raise JsonFormatError("'signature_name' must be a string")
    payload = document["instances"] if has_rows else document["inputs"]
    if has_rows and not isinstance(payload, list):
        raise JsonFormatError("Expecting 'instances' to be a list/array")
    if has_rows and not payload:
        raise JsonFormatError("'instances' is an empty list")
    parameters = {k: v for k, v in document.items() if k not in ("instances", "inputs")}
    return PredictBody(signature, payload, has_rows, parameters)


def named_values(body: PredictBody, input_names: Sequence[str]) -> dict[str, Any]:
    """The body's JSON values by input name; unnamed values go to the only input.

    Raises:
        JsonFormatError: unnamed values for a signature with several inputs, or named
            instances whose keys differ.
    """
    if body.row_format:
        return _row_values(body.payload, input_names)
    payload = body.payload
    if isinstance(payload, dict) and not _is_b64(payload):
        return dict(payload)
    if len(input_names) != 1:
        raise JsonFormatError(
            f"'inputs' must be an object with the named inputs {sorted(input_names)}"
        )
    return {input_names[0]: payload}


def _row_values(instances: list[Any], input_names: Sequence[str]) -> dict[str, Any]:
    if not (isinstance(instances[0], dict) and not _is_b64(instances[0])):
        if len(input_names) != 1:
            raise JsonFormatError(
                "instances is a plain list, but expecting list of objects as multiple "
                f"input tensors required as per tensorinfo_map {sorted(input_names)}"
            )
        return {input_names[0]: instances}
    names = list(instances[0])
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or set(instance) != set(names):
            raise JsonFormatError(
                f"Failed to process element: {index} of 'instances' list. "
                f"Error: every instance must be an object with the keys {sorted(names)}"
            )
    return {name: [instance[name] for instance in instances] for name in names}


def _is_b64(value: dict[str, Any]) -> bool:
    return set(value) == {"b64"}


def to_array(value: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """One input's JSON value as a tensor of `dtype` (None: numbers as parsed, strings
    and `{"b64": ...}` as bytes).

    Raises:
        JsonFormatError: ragged nesting, values of the wrong JSON type, bad base64;
            the message names the input.
    """
    if (dtype is not None and dtype.kind in "OSU") or (dtype is None and _has_object(value)):
        return _string_array(value, name)
    try:
        parsed = np.asarray(value)
    except ValueError:
        raise JsonFormatError(
            f"input '{name}': values do not form a rectangular tensor (rows of different lengths)"
        ) from None
    target = dtype if dtype is not None else parsed.dtype
    if parsed.dtype.kind not in _ACCEPTED_KINDS.get(target.kind, "biuf"):
        raise JsonFormatError(
            f"input '{name}': expected {_describe(target)} values "
            f"but received {_KIND_NAMES.get(parsed.dtype.kind, str(parsed.dtype))}"
        )
    return parsed.astype(target, copy=False)


def _describe(dtype: np.dtype) -> str:
    if dtype.kind not in "biufc":  # no dtype asked for, and the values are not numbers
        return "numeric"
    return f"{TF_DTYPES.get(dtype.name, dtype.name)} ({dtype})"


def _has_object(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (dict, str))


def _string_array(value: Any, name: str) -> np.ndarray:
    decoded = _decode_strings(value, name)
    array = np.empty(np.shape(decoded) if isinstance(decoded, list) else (), dtype=object)
    try:
        array[...] = decoded
    except ValueError:
        raise JsonFormatError(f"input '{name}': values do not form a rectangular tensor") from None
    return array


def _decode_strings(value: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_decode_strings(v, name) for v in value]
    if isinstance(value, dict) and _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError):
            raise JsonFormatError(
                f"input '{name}': JSON Value not formatted correctly for base64 data"
            ) from None
    if isinstance(value, str):
        return value.encode()
    raise JsonFormatError(
        f"input '{name}': expected strings or {{\"b64\": ...}} objects, got {value!r}"
    )


def check_examples(document: dict[str, Any]) -> None:
    """TF Serving's checks of a `:classify`/`:regress` body before it looks at the model
    (json_tensor.cc `FillClassifyRegressRequestFromJson`; its text names classify for
    both APIs, and quotes the body as rapidjson's pretty writer prints it).

    Raises:
        JsonFormatError: no `examples` key, not a list, or an empty list.
    """
    if "examples" not in document:
        problem = "When method is classify, key 'examples' is expected and was not found"
    elif not isinstance(document["examples"], list):
        problem = "Expecting 'examples' value to be an list/array"
    elif not document["examples"]:
        problem = "'examples' value is an empty array"
    else:
        return
    raise JsonFormatError(f"JSON Value: {json.dumps(document, indent=4)} {problem}")


def wrong_method(api: str, method_name: str) -> str:
    """TF Serving's INVALID_ARGUMENT text for `:classify`/`:regress` on a signature of
    another method (`GetClassificationSignatureDef`/`GetRegressionSignatureDef` in
    tensorflow_serving/servables/tensorflow/classifier.cc and regressor.cc)."""
    return (
        f"Expected {_API_KINDS[api]} signature method_name to be {SIGNATURE_METHODS[api]}. "
        f"Was: {method_name}"
    )


def decode_predict(
    document: Any, inputs: Mapping[str, np.dtype | None]
) -> tuple[PredictBody, dict[str, np.ndarray]]:
    """`parse_predict`, `named_values` and `to_array` in one: the body and its tensors.

    Args:
        document: the parsed JSON body.
        inputs: the signature's input names and dtypes (None: as parsed); a name not in
            it is converted as parsed and left for the caller's signature check.
    """
    body = parse_predict(document)
    values = named_values(body, list(inputs))
    return body, {name: to_array(v, name, inputs.get(name)) for name, v in values.items()}


def encode_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """TF Serving's answer: `predictions` (row) or `outputs` (columnar) as JSON bytes.

    A lone output is written bare; several are an object (columnar) or one object per
    batch row (row format, which needs every output to share its 0th dimension), their
    names in sorted order (TF Serving writes its output map's order, which protobuf leaves
    unspecified; sorted makes every dualserve side write the same bytes).

    Raises:
        JsonFormatError: row format with outputs of different batch sizes.
    """
    values = {name: _output_json(name, outputs[name]) for name in sorted(outputs)}
    if not row_format:
        body: Any = next(iter(values.values())) if len(values) == 1 else values
        return dumps({"outputs": body})
    if len(values) == 1:
        return dumps({"predictions": next(iter(values.values()))})
    count = _batch_rows(outputs)
    rows = {name: _rows(value) for name, value in values.items()}
    return dumps({"predictions": [{n: col[i] for n, col in rows.items()} for i in range(count)]})


def _rows(value: Any) -> list[Any]:
    """An output's batch rows, cheap for orjson: integers as Python ints (exact), floats
    as numpy rows or scalars (so float32 stays float32), strings as they are."""
    if not isinstance(value, np.ndarray):
        return list(value)
    if value.ndim == 1 and value.dtype.kind in "biu":
        return list(value.tolist())
    return list(value)


def _batch_rows(outputs: Mapping[str, np.ndarray]) -> int:
    sizes = {name: value.shape[0] if value.ndim else -1 for name, value in outputs.items()}
    distinct = set(sizes.values())
    if len(distinct) != 1 or -1 in distinct:
        raise JsonFormatError(
            f"Tensor batch sizes differ or are missing across outputs {sizes}; "
            "use the columnar format ('inputs') for this signature"
        )
    return int(distinct.pop())


def _output_json(name: str, value: np.ndarray) -> Any:
    if value.dtype.kind in "OSU":
        return _strings_to_json(value.tolist(), name.endswith("_bytes"))
    if value.ndim == 0:
        return value[()]  # a numpy scalar: it keeps its dtype (orjson takes no 0-d array)
    return np.ascontiguousarray(value)


def _strings_to_json(value: Any, as_b64: bool) -> Any:
    if isinstance(value, list):
        return [_strings_to_json(v, as_b64) for v in value]
    if isinstance(value, bytes):
        if as_b64:
            return {"b64": base64.b64encode(value).decode()}
        return value.decode("utf-8", errors="replace")
    return value
