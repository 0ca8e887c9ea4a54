"""Open Inference Protocol gRPC tensors <-> numpy, without a Python loop per element.

Inputs come either as `raw_input_contents` (one little-endian byte string per input, what
tritonclient sends) read by `gateway.codecs.oip_raw`, or in the typed `contents` field
named by the datatype, read with `np.fromiter`. Data in any other contents field, or contents
next to raw contents, is an error in Triton's words (FP32 values in `int64_contents` are
not FP32 data). Answers use
`raw_output_contents` when the request used raw inputs (as Triton does), typed contents
otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gateway.codecs.oip_raw import datatype_of, dtype_of, from_raw, to_raw
from gateway.core.errors import BadRequest

# The typed `InferTensorContents` field holding each datatype (FP16 travels raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _shape(spec: Any) -> tuple[int, ...]:
    shape = tuple(spec.shape)  # int64 values: Python ints already
    if shape and min(shape) < 0:
        raise BadRequest(f"input '{spec.name}': shape {list(shape)} has a negative dimension")
    return shape


def _sized(spec: Any, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if flat.size != math.prod(shape):
        raise BadRequest(
            f"input '{spec.name}': shape {list(shape)} needs {math.prod(shape)} values, "
            f"got {flat.size}"
        )
    return flat.reshape(shape)


# The datatype a contents field carries (int/uint fields also carry the narrower types).
_FIELD_TYPE = {
    "bool_contents": "BOOL",
    "int_contents": "INT32",
    "int64_contents": "INT64",
    "uint_contents": "UINT32",
    "uint64_contents": "UINT64",
    "fp32_contents": "FP32",
    "fp64_contents": "FP64",
    "bytes_contents": "BYTES",
}


def _check_contents(spec: Any, model: str, field: str) -> None:
    """Values only in the datatype's own field, in Triton's words (InferGRPCToInputHelper):
    FP32 data in `int64_contents` is INT64 data, not FP32."""
    where = f"input tensor '{spec.name}' for model '{model}'"
    fields = [f.name for f, _ in spec.contents.ListFields()]
    if len(fields) > 1:
        raise BadRequest(
            f"unexpected explicit tensor data for {where}, binary data was already supplied."
        )
    if fields and fields[0] != field:
        raise BadRequest(
            f"unexpected explicit tensor data for {where} of type "
            f"'{_FIELD_TYPE[fields[0]]}', expected datatype '{spec.datatype}'"
        )


def from_contents(spec: Any, model: str) -> np.ndarray:
    """One input from the typed contents field its datatype names.

    Raises:
        BadRequest: a datatype without a typed field (FP16), or values in another field.
    """
    dtype = dtype_of(spec.name, spec.datatype)
    field = CONTENTS_FIELD.get(spec.datatype)
    if field is None:
        raise BadRequest(f"input '{spec.name}': {spec.datatype} data must be raw_input_contents")
    _check_contents(spec, model, field)
    values = getattr(spec.contents, field)
    flat = np.fromiter(values, dtype=dtype, count=len(values))
    return _sized(spec, flat, _shape(spec))


def decode_inputs(request: Any) -> tuple[dict[str, np.ndarray], bool]:
    """(named inputs, whether they came raw) from a `ModelInferRequest`."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    if not request.inputs:
        raise BadRequest("ModelInferRequest has no inputs")
    if raw:
        for spec in request.inputs:
            if spec.HasField("contents"):
                raise BadRequest(
                    "contents field must not be specified when using raw_input_contents for "
                    f"'{spec.name}' for model '{request.model_name}'"
                )
        return {
            s.name: from_raw(s.name, s.datatype, _shape(s), raw[i])
            for i, s in enumerate(request.inputs)
        }, True
    return {s.name: from_contents(s, request.model_name) for s in request.inputs}, False


def encode_outputs(response: Any, outputs: dict[str, np.ndarray], raw: bool) -> None:
    """Append every output tensor to a `ModelInferResponse` (raw for all of them when
    asked, or when a datatype has no typed field: Triton does not mix the two)."""
    datatypes = {name: datatype_of(value.dtype) for name, value in outputs.items()}
    raw = raw or any(datatype not in CONTENTS_FIELD for datatype in datatypes.values())
    for name, value in outputs.items():
        datatype = datatypes[name]
        tensor = response.outputs.add(name=name, datatype=datatype, shape=value.shape)
        if raw:
            response.raw_output_contents.append(to_raw(value, datatype))
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(value.ravel().tolist())


def parameters(request: Any) -> dict[str, Any]:
    """The request's parameters as plain values (routing may read one)."""
    out = {}
    for key, param in request.parameters.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(param, choice)
    return out
