"""Open Inference Protocol datatypes and their raw bytes <-> numpy.

One table of datatypes, and one reading of the raw tensor layout shared by the v2 REST
binary tensor data extension and v2 gRPC's `raw_input_contents`/`raw_output_contents`:
little-endian, row major, no padding; BOOL one byte per element (0 or 1); BYTES each
element a 4-byte little-endian unsigned length followed by its bytes.

Source: Triton, docs/protocol/extension_binary_data.md ("Binary Tensor Data Extension"),
and the KServe Open Inference Protocol, "Tensor Data" (datatypes table).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from gateway.core.errors import BadRequest

BYTES = "BYTES"
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    BYTES: np.dtype(object),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# Each datatype's little-endian dtype (the wire's), made once rather than per tensor.
_LITTLE = {name: dtype.newbyteorder("<") for name, dtype in DATATYPES.items()}
_LENGTH = struct.Struct("<I")


def datatype_of(dtype: np.dtype) -> str:
    """The OIP datatype of a numpy dtype (strings and objects are BYTES)."""
    name = _NAMES.get(dtype)  # a native numpy dtype: one lookup
    return name if name is not None else _NAMES.get(np.dtype(dtype), BYTES)


def dtype_of(name: str, datatype: str) -> np.dtype:
    """The numpy dtype of an OIP datatype; BadRequest naming the tensor when unknown."""
    try:
        return DATATYPES[datatype]
    except (KeyError, TypeError):
        raise BadRequest(f"input '{name}': unsupported datatype '{datatype}'") from None


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """A tensor from its raw bytes (a read-only view on `raw` for fixed-size datatypes).

    Raises:
        BadRequest: unknown datatype, or a byte count that does not fit the shape.
    """
    dtype = dtype_of(name, datatype)
    count = math.prod(shape)
    if datatype == BYTES:
        return _bytes_elements(name, raw, count).reshape(tuple(shape))
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': {len(raw)} bytes of binary data do not match shape "
            f"{list(shape)} of {datatype} ({count * dtype.itemsize} bytes)"
        )
    little = _LITTLE[datatype]
    flat = np.frombuffer(raw, dtype=little)
    if little != dtype:  # big-endian hosts convert
        flat = flat.astype(dtype)
    return flat.reshape(tuple(shape))


def _bytes_elements(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        if offset + _LENGTH.size > len(raw):
            raise BadRequest(f"input '{name}': BYTES data ends before element {i} of {count}")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise BadRequest(f"input '{name}': BYTES element {i} runs past the end of its data")
        out[i] = bytes(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise BadRequest(
            f"input '{name}': {len(raw) - offset} bytes left over after {count} BYTES elements"
        )
    return out


def to_raw(value: np.ndarray, datatype: str | None = None) -> bytes:
    """A tensor's raw bytes: little-endian, row major; BYTES length-prefixed (str as UTF-8).
    `datatype` is `datatype_of(value.dtype)` when the caller knows it already."""
    if (datatype or datatype_of(value.dtype)) == BYTES:
        parts = []
        for element in value.reshape(-1):
            data = element.encode() if isinstance(element, str) else bytes(element)
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    little = value.astype(value.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).tobytes()
