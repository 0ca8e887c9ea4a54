"""JSON text with TF Serving's non-finite numbers and float32 kept float32.

TF Serving's REST API (section "JSON Mapping") and Triton read and write the tokens
`NaN`, `Infinity` and `-Infinity`, which strict JSON parsers refuse and orjson writes as
`null`. TF Serving writes a float32 as float32 (json_tensor.cc `WriteDecimal`), never its
float64 widening. Both REST ingresses of the gateway (TF Serving and Open Inference
Protocol), the bundled TF server and the TorchServe handler read and write JSON here.

Standard library and numpy only (the handler packs this file into every .mar); orjson is
used when installed (the dualserve venv has it, the official TorchServe image does not),
with the same values either way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

try:
    import orjson as _orjson
except ImportError:  # the official TorchServe image: the standard library does it all
    _orjson = None  # type: ignore[assignment]


class JsonFormatError(ValueError):
    """A body that is not valid (TF Serving) JSON; the message names the problem."""


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON text, accepting TF Serving's `NaN`, `Infinity` and `-Infinity`.

    Raises:
        JsonFormatError: "JSON Parse error: ..." for text that is not JSON.
    """
    first: Exception | None = None
    if _orjson is not None:
        try:
            return _orjson.loads(raw)
        except _orjson.JSONDecodeError as exc:  # also non-finite tokens: retried below
            first = exc
    text = bytes(raw) if isinstance(raw, memoryview) else raw
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise JsonFormatError(f"JSON Parse error: {first or exc}") from None


def dumps(document: Any) -> bytes:
    """JSON bytes: numpy arrays as nested lists, float32 as float32, non-finite as tokens.

    Accepts dicts, lists, tuples, str, int, float, bool, None, numpy arrays and scalars.
    """
    if _orjson is not None:
        # orjson writes float32 as float32 but non-finite floats as null: only a body
        # with a null (rare in answers) needs the look at every value.
        text = _orjson.dumps(document, option=_orjson.OPT_SERIALIZE_NUMPY)
        if b"null" not in text or _all_finite(document):
            return text
    return _write(document).encode()


def _all_finite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind != "f" or bool(np.isfinite(value).all())
    if isinstance(value, (float, np.floating)):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True


def _write(value: Any) -> str:
    """The slow writer: non-finite tokens, and no orjson. Floats print as their own type."""
    if isinstance(value, np.ndarray):
        return _write_array(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{_write(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_write(v) for v in value) + "]"
    if isinstance(value, (float, np.floating)):
        return _number(value)
    if isinstance(value, np.generic):
        return json.dumps(value.item())
    return json.dumps(value)


def _write_array(array: np.ndarray) -> str:
    if array.dtype.kind != "f" or array.size == 0:
        return json.dumps(array.tolist())
    flat = array.reshape(-1)
    finite = np.isfinite(flat)
    if _orjson is not None:  # one call formats every finite value in its own type
        text = _orjson.dumps(np.where(finite, flat, 0), option=_orjson.OPT_SERIALIZE_NUMPY)
        tokens = text[1:-1].decode().split(",")
    else:
        tokens = [_number(value) for value in flat]
    for index in np.flatnonzero(~finite):
        tokens[index] = _number(flat[index])
    return _nest(tokens, array.shape)


def _nest(tokens: list[str], shape: tuple[int, ...]) -> str:
    """Flat value tokens as the nested JSON lists of `shape` (C order)."""
    items = tokens
    for size in reversed(shape[1:]):
        items = ["[" + ",".join(items[i : i + size]) + "]" for i in range(0, len(items), size)]
    return "[" + ",".join(items) + "]" if shape else items[0]


def _number(value: float | np.floating) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = str(value)  # numpy prints the shortest decimal that round-trips in its own type
    return text if any(c in text for c in ".e") else text + ".0"
