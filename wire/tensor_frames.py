"""A lean binary body for named tensors, spoken between the gateway and the handler.

`.npz` answers cost the gateway a zip parse and a Python `literal_eval` per array, a
large share of its CPU per forwarded request. A frame is the magic `DSTF`, a 4-byte
little-endian header length, a JSON header naming each tensor's dtype, shape and byte
range, then the raw little-endian bytes. Decoding is one JSON parse and a
`np.frombuffer` per tensor.

This module is packed into every .mar next to the handler (TorchServe puts the model
directory on sys.path), so it depends on numpy and the standard library only.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import numpy as np

MAGIC = b"DSTF"
CONTENT_TYPE = "application/x-dualserve-tensors"
_LENGTH = struct.Struct("<I")
_PREFIX = len(MAGIC) + _LENGTH.size


class FrameError(ValueError):
    """The body is not a well-formed frame; the message says what is wrong."""


def is_frame(body: bytes | bytearray) -> bool:
    return bytes(body[: len(MAGIC)]) == MAGIC


def encode_frame(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Named arrays -> one frame (little-endian, C order)."""
    entries, chunks, offset = [], [], 0
    for name, value in tensors.items():
        array = np.ascontiguousarray(value)
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        dtype = array.dtype.str.lstrip("<>|=")
        shape = list(array.shape)
        entries.append(
            {"name": name, "dtype": dtype, "shape": shape, "offset": offset, "nbytes": len(data)}
        )
        chunks.append(data)
        offset += len(data)
    header = json.dumps(entries, separators=(",", ":")).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(header)), header, *chunks])


def decode_frame(body: bytes | bytearray) -> dict[str, np.ndarray]:
    """One frame -> named arrays (views on `body`, read-only)."""
    if not is_frame(body) or len(body) < _PREFIX:
        raise FrameError("not a tensor frame (bad magic)")
    (length,) = _LENGTH.unpack_from(body, len(MAGIC))
    try:
        entries = json.loads(bytes(body[_PREFIX : _PREFIX + length]))
        return {e["name"]: _tensor(body, _PREFIX + length, e) for e in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise FrameError(f"malformed tensor frame: {exc}") from None


def _tensor(body: bytes | bytearray, start: int, entry: dict) -> np.ndarray:  # type: ignore[type-arg]
    dtype = np.dtype(entry["dtype"]).newbyteorder("<")
    begin = start + int(entry["offset"])
    if begin + int(entry["nbytes"]) > len(body):
        raise FrameError(f"tensor '{entry['name']}' runs past the end of the body")
    count = int(entry["nbytes"]) // dtype.itemsize
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=begin)
    return flat.reshape(entry["shape"])
