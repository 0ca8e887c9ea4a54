"""numpy <-> `tensorflow.TensorProto`, without TensorFlow and without a loop per element.

Encoding writes `tensor_content` (raw little-endian bytes, TF Serving's fast path) plus
dtype and shape. Decoding reads `tensor_content` when present, else the typed repeated
field (`float_val`, `int64_val`, ...) that clients such as `tf.make_tensor_proto` fill for
small tensors. Strings travel in `string_val` (they have no fixed width).

Works on any TensorProto class with TF's field layout: the gateway's private one
(`gateway._proto.tfserving.TensorProto`) or the real `tensorflow.core` one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from gateway._proto.tfserving import TensorProto
from gateway.edge.security_settings import DEFAULT_MAX_TENSOR_ELEMENTS

# tensorflow/core/framework/types.proto
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23

# TF dtype enum -> (numpy dtype, the typed repeated field holding values without tensor_content)
DTYPES: dict[int, tuple[np.dtype, str]] = {
    DT_FLOAT: (np.dtype(np.float32), "float_val"),
    DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    DT_INT32: (np.dtype(np.int32), "int_val"),
    DT_UINT8: (np.dtype(np.uint8), "int_val"),
    DT_INT16: (np.dtype(np.int16), "int_val"),
    DT_INT8: (np.dtype(np.int8), "int_val"),
    DT_STRING: (np.dtype(object), "string_val"),
    DT_INT64: (np.dtype(np.int64), "int64_val"),
    DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    DT_UINT16: (np.dtype(np.uint16), "int_val"),
    DT_HALF: (np.dtype(np.float16), "half_val"),
    DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
}
_ENUM_OF: dict[np.dtype, int] = {
    dtype: enum for enum, (dtype, _) in DTYPES.items() if enum != DT_STRING
}
# The wire's little-endian dtype of each enum, made once (not per tensor).
_LITTLE: dict[int, np.dtype] = {enum: pair[0].newbyteorder("<") for enum, pair in DTYPES.items()}


class TensorCodecError(ValueError):
    """A tensor that cannot be converted; the message names the dtype or the size problem."""


def dtype_enum(dtype: np.dtype) -> int:
    """TF's dtype enum for a numpy dtype (bytes and str arrays are DT_STRING)."""
    enum = _ENUM_OF.get(dtype)  # native byte order: one lookup
    if enum is not None:
        return enum
    if dtype.kind in "SUO":
        return DT_STRING
    try:
        return _ENUM_OF[dtype.newbyteorder("=")]
    except KeyError:
        raise TensorCodecError(f"dtype {dtype.name} has no TensorProto equivalent") from None


def to_tensor_proto(array: np.ndarray, proto: Any | None = None) -> Any:
    """Fill `proto` (a new gateway TensorProto by default) from `array`."""
    array = np.asarray(array)
    proto = TensorProto() if proto is None else proto
    proto.dtype = dtype_enum(array.dtype)
    proto.tensor_shape.MergeFromString(_shape_bytes(array.shape))
    if proto.dtype == DT_STRING:
        proto.string_val.extend(_as_bytes(v) for v in array.ravel().tolist())
    else:
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        proto.tensor_content = np.ascontiguousarray(little).tobytes()
    return proto


def from_tensor_proto(proto: Any) -> np.ndarray:
    """The numpy array a TensorProto holds (read-only when decoded from tensor_content)."""
    if proto.dtype not in DTYPES:
        raise TensorCodecError(f"TensorProto dtype {proto.dtype} is not supported")
    dtype, field = DTYPES[proto.dtype]
    shape = tuple([d.size for d in proto.tensor_shape.dim])
    content = proto.tensor_content
    if content:
        return _from_content(content, _LITTLE[proto.dtype], dtype, shape)
    return _from_typed_field(getattr(proto, field), proto.dtype, dtype, shape)


def to_tensor_map(arrays: Mapping[str, np.ndarray], target: MutableMapping[str, Any]) -> None:
    """Write named arrays into a protobuf `map<string, TensorProto>` field."""
    for name, array in arrays.items():
        to_tensor_proto(array, target[name])


def from_tensor_map(protos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Read a protobuf `map<string, TensorProto>` field into named arrays."""
    return {name: from_tensor_proto(proto) for name, proto in protos.items()}


@functools.lru_cache(maxsize=1024)
def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    """A serialized `TensorShapeProto` of `shape`: merged into each tensor in one call, a
    few times cheaper than adding its dimensions one by one (shapes repeat, the cache is
    bounded)."""
    dims = TensorProto().tensor_shape
    for size in shape:
        dims.dim.add(size=int(size))
    return bytes(dims.SerializeToString())


def _from_content(
    content: bytes, little: np.dtype, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    if dtype == np.dtype(object):
        raise TensorCodecError("DT_STRING tensors carry their values in string_val")
    if len(content) % dtype.itemsize:
        raise TensorCodecError(
            f"tensor_content of {len(content)} bytes is not a whole number of"
            f" {dtype.name} values ({dtype.itemsize} bytes each)"
        )
    flat = np.frombuffer(content, dtype=little)
    expected = math.prod(shape)
    if flat.size != expected:
        raise TensorCodecError(
            f"tensor_content holds {flat.size} values, shape {list(shape)} needs {expected}"
        )
    array = flat.reshape(shape)
    return array if little == dtype else array.astype(dtype)  # big-endian hosts convert


def _from_typed_field(
    values: Any, enum: int, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    if enum == DT_HALF:  # half_val holds the float16 bit patterns as int32
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:
        flat = np.asarray(values, dtype=dtype)
    expected = math.prod(shape)
    if flat.size == expected:
        return flat.reshape(shape)
    # TF's own rule: one value (or none) fills the whole tensor, e.g. tf.fill results.
    if flat.size <= 1 and expected > DEFAULT_MAX_TENSOR_ELEMENTS:
        # A few bytes must not allocate gigabytes: refused before np.full, not after.
        raise TensorCodecError(
            f"shape {list(shape)} filled from one value would hold {expected} values, more"
            f" than the limit of {DEFAULT_MAX_TENSOR_ELEMENTS} (limits.max_tensor_elements)"
        )
    if flat.size <= 1 and expected > 0:
        fill = flat[0] if flat.size else np.zeros((), dtype=dtype)[()]
        return np.full(shape, fill, dtype=dtype)
    raise TensorCodecError(f"tensor holds {flat.size} values, shape {list(shape)} needs {expected}")


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
