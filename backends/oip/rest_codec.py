"""OIP v2 REST bodies <-> named numpy arrays, with the binary tensor data extension.

A request body is a JSON object, optionally followed by raw tensor data whose start the
header `Inference-Header-Content-Length` gives; an input with `parameters.binary_data_size`
takes that many bytes of it, in input order. Outputs go back as raw data when the request
asks (`parameters.binary_data_output`, or `binary_data` per output): the JSON object, then
the outputs' bytes in output order, with the same header. Raw layout and datatypes are
`gateway.codecs.oip_raw`'s (little-endian, row major).

Source: KServe's Open Inference Protocol (REST) and Triton's
docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from backends.oip.errors import InvalidInput
from gateway.codecs.oip_raw import DATATYPES, datatype_of, from_raw, to_raw
from gateway.core.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class RestInfer:
    """A decoded infer request."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    binary: dict[str, bool]
    binary_default: bool


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON object, binary data); all JSON without the header.

    Raises:
        InvalidInput: the header is not a byte count within the body.
    """
    if header_length is None:
        return raw, b""
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise InvalidInput(
            f"header {HEADER_LENGTH} must be a byte count within the body's {len(raw)} bytes,"
            f" got '{header_length}'"
        )
    return raw[: int(header_length)], raw[int(header_length) :]


def decode_infer(raw: bytes, header_length: str | None) -> RestInfer:
    """The request's id, inputs (by name), asked outputs and their binary flags.

    Raises:
        InvalidInput: naming the field that is missing, mistyped or does not fit.
    """
    head, binary = split_body(raw, header_length)
    try:
        doc = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput("the request must be a JSON object with an 'inputs' list")
    inputs, offset = {}, 0
    for entry in doc["inputs"]:
        name, value, offset = _input(entry, binary, offset)
        inputs[name] = value
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    params = _params(doc)
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and "name" in o for o in outputs
    ):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    binary_flags = {str(o["name"]): bool(_params(o).get("binary_data")) for o in outputs}
    request_id = doc.get("id")
    return RestInfer(
        str(request_id) if request_id is not None else None,
        inputs,
        [str(o["name"]) for o in outputs],
        binary_flags,
        bool(params.get("binary_data_output", False)),
    )


def _params(entry: dict[str, Any]) -> dict[str, Any]:
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    return params


def _input(entry: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidInput("each input must be an object with a 'name'")
    name, datatype, shape = entry["name"], entry.get("datatype"), entry.get("shape")
    if datatype not in DATATYPES:
        raise InvalidInput(f"input '{name}': unsupported datatype '{datatype}'")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of non-negative integers")
    size = _params(entry).get("binary_data_size")
    try:
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input '{name}': binary_data_size {size} is past the data")
            return (
                name,
                from_raw(name, datatype, shape, binary[offset : offset + size]),
                offset + size,
            )
        return name, _from_json(name, datatype, shape, entry.get("data")), offset
    except BadRequest as exc:
        raise InvalidInput(exc.message) from None


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    if data is None:
        raise InvalidInput(f"input '{name}' has neither 'data' nor binary_data_size")
    try:
        flat = np.asarray(data, dtype=DATATYPES[datatype]).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"input '{name}': data is not {datatype}: {exc}") from None
    if flat.size != math.prod(shape):
        raise InvalidInput(
            f"input '{name}': {flat.size} values do not fill shape {shape} ({math.prod(shape)})"
        )
    return flat.reshape(shape)


def encode_infer(
    model: str, version: int, request: RestInfer, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON object's length when binary data follows it."""
    entries, buffers = [], []
    for name, value in outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(value.dtype),
            "shape": list(value.shape),
        }
        if request.binary.get(name, request.binary_default):
            data = to_raw(value)
            buffers.append(data)
            entry["parameters"] = {"binary_data_size": len(data)}
        else:
            entry["data"] = value.reshape(-1).tolist()
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": entries}
    if request.id is not None:
        doc["id"] = request.id
    head = orjson.dumps(doc)
    if not buffers:
        return head, None
    return b"".join([head, *buffers]), len(head)
