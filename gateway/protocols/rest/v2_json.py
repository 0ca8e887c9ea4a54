"""Open Inference Protocol v2 (KServe v2 / Triton) JSON tensors.

Requests are typed strictly, as Triton reads them: every element of `data` must be of its
datatype's JSON type (numbers for FP*, integers within range for INT*/UINT*, `true`/`false`
for BOOL, strings for BYTES); `data` may be flat or nested. An input whose parameters give
`binary_data_size` takes its data from the bytes after the JSON object instead (the binary
tensor data extension; `gateway.protocols.rest.v2_binary` splits the body).

Sources: KServe Open Inference Protocol, "Inference Request JSON Object" and "Tensor Data";
Triton, docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import orjson

from gateway.codecs.oip_raw import BYTES, DATATYPES, datatype_of, dtype_of, from_raw
from gateway.core.errors import BadRequest
from gateway.protocols import classification

__all__ = ["DATATYPES", "V2Request", "datatype_of", "decode_infer", "encode_infer"]

_NUMBER = frozenset({int, float})
_INTEGER = frozenset({int})
_JSON_TYPES: dict[str, tuple[frozenset[type], str]] = {
    "BOOL": (frozenset({bool}), "true or false"),
    BYTES: (frozenset({str}), "a string"),
    **{t: (_NUMBER, "a number") for t in ("FP16", "FP32", "FP64")},
    **{t: (_INTEGER, "an integer") for t in DATATYPES if t.startswith(("INT", "UINT"))},
}


@dataclass
class V2Request:
    """A decoded v2 inference request body.

    Attributes:
        inputs: named tensors, shaped as declared.
        outputs: requested output names, in order (empty means all).
        parameters: the request-level `parameters` object.
        id: the request's `id`, echoed in the response body; None when not given.
        binary_outputs: per-output `parameters.binary_data`, where given.
        binary_default: the request's `parameters.binary_data_output` (default False).
        classification: per output, the K of `parameters.classification` where given
            (the classification extension, `gateway.protocols.classification`).
    """

    inputs: dict[str, np.ndarray]
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    binary_outputs: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False
    classification: dict[str, int] = field(default_factory=dict)

    def binary(self, name: str) -> bool:
        """Whether output `name` goes back as binary data."""
        return self.binary_outputs.get(name, self.binary_default)


def decode_infer(body: Any, binary: bytes | memoryview = b"") -> V2Request:
    """A `V2Request` from a parsed v2 request object and the binary data after it.

    Raises:
        BadRequest: naming the field, tensor and element at fault.
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest("request must be an object with a non-empty 'inputs' list")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    parameters = _parameters(body, "request")
    request = V2Request(inputs={}, parameters=parameters, id=request_id)
    request.binary_default = _flag(parameters, "binary_data_output", "request")
    offset, view = 0, memoryview(binary)  # slices of a view copy nothing
    for index, spec in enumerate(body["inputs"]):
        name, tensor, offset = _input(spec, index, view, offset)
        request.inputs[name] = tensor
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data follow the inputs' binary_data_size"
        )
    _outputs(body.get("outputs"), request)
    return request


def _parameters(spec: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return parameters


def _flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}: parameter '{key}' must be true or false")
    return value


def _outputs(outputs: Any, request: V2Request) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    for output in outputs:
        name = output["name"]
        request.outputs.append(name)
        parameters = _parameters(output, f"output '{name}'")
        if "class_count" in parameters:  # a name some clients guess; Triton reads neither
            raise BadRequest(
                f"output '{name}': unknown parameter 'class_count' (the classification "
                f"extension's parameter is '{classification.PARAMETER}')"
            )
        count = classification.requested_count(name, parameters)
        if count is not None:
            request.classification[name] = count
        if "binary_data" in parameters:
            request.binary_outputs[name] = _flag(parameters, "binary_data", f"output '{name}'")


def _input(spec: Any, index: int, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """(name, tensor, offset after its binary data) of `inputs[index]`."""
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise BadRequest(f"{where} must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype"):
        if key not in spec:
            raise BadRequest(f"{where} is missing '{key}'")
    name, datatype, shape = spec["name"], spec["datatype"], spec["shape"]
    if not isinstance(name, str):
        raise BadRequest(f"{where}: 'name' must be a string")
    dtype_of(name, datatype)
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of non-negative integers")
    size = _parameters(spec, f"input '{name}'").get("binary_data_size")
    if size is None:
        if "data" not in spec:
            raise BadRequest(f"{where} is missing 'data'")
        return name, _from_json(name, datatype, shape, spec["data"]), offset
    if "data" in spec:
        raise BadRequest(f"input '{name}': give either 'data' or binary_data_size, not both")
    return name, _from_binary(name, datatype, shape, size, binary[offset:]), offset + size


def _from_binary(
    name: str, datatype: str, shape: list[int], size: Any, rest: memoryview
) -> np.ndarray:
    """A tensor from the first `size` bytes of `rest` (binary tensor data extension)."""
    if type(size) is not int or size < 0:
        raise BadRequest(f"input '{name}': binary_data_size must be a non-negative integer")
    if size > len(rest):
        raise BadRequest(
            f"input '{name}': binary_data_size {size} runs past the end of the body "
            f"({len(rest)} bytes of binary data left)"
        )
    return from_raw(name, datatype, shape, rest[:size])


def _flat(data: list[Any]) -> tuple[list[Any], set[type]]:
    """`data` flattened (row major) and the set of its elements' types. Rectangular
    nesting is flattened a level at a time in C (`chain`); ragged nesting element-wise."""
    while data and type(data[0]) is list and all(type(row) is list for row in data):
        data = list(chain.from_iterable(data))
    types = set(map(type, data))
    if list in types:
        data = _flatten(data)
        types = set(map(type, data))
    return data, types


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for element in data:
        if type(element) is list:
            flat.extend(_flatten(element))
        else:
            flat.append(element)
    return flat


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """A tensor from JSON `data`, every element of the datatype's JSON type."""
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a list")
    data, types = _flat(data)
    allowed, expected = _JSON_TYPES[datatype]
    if not types <= allowed:
        index = next(i for i, v in enumerate(data) if type(v) not in allowed)
        raise BadRequest(
            f"input '{name}': data[{index}] is {_show(data[index])}, "
            f"expected {expected} ({datatype})"
        )
    if data and allowed is _INTEGER:
        _check_range(name, datatype, data)
    if len(data) != math.prod(shape):
        raise BadRequest(
            f"input '{name}': shape {shape} needs {math.prod(shape)} values, got {len(data)}"
        )
    if datatype == BYTES:
        return np.array([s.encode() for s in data] or [], dtype=object).reshape(shape)
    return np.array(data, dtype=DATATYPES[datatype]).reshape(shape)


def _check_range(name: str, datatype: str, data: list[int]) -> None:
    limits = np.iinfo(DATATYPES[datatype])
    low, high = int(limits.min), int(limits.max)
    if min(data) < low or max(data) > high:
        index = next(i for i, v in enumerate(data) if not low <= v <= high)
        raise BadRequest(
            f"input '{name}': data[{index}] = {data[index]} is out of range for {datatype} "
            f"[{low}, {high}]"
        )


def _show(value: Any) -> str:
    """An element as JSON, cut to 40 characters."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


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
