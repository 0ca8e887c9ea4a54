"""Triton's classification extension, on the v2 REST and gRPC ingresses.

A requested output may ask for its top K classes instead of its scores: REST
`"outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]`, gRPC
`outputs[i].parameters["classification"].int64_param = 3` (tritonclient's
`InferRequestedOutput(name, class_count=3)` writes both). The answer replaces that output
with a BYTES tensor `[batch, min(K, classes)]` whose elements are `"score:index"`, the
highest score first: the score as C's `std::to_string(float)` writes it (`%f`, six
decimals), the index of the class along the last axis. Triton appends `":label"` when the
model has a labels file; the catalog has none, so no label is written.

Only an output with a class axis can be classified: a numeric `[batch, classes]` tensor
(`probabilities`); any other output (`class`, int64 `[batch]`), a K that is not a positive
integer, or a name the model does not return, is refused with 400 before the backend is
called. Ties keep the lower index first (a stable sort; Triton's `std::sort` leaves their
order unspecified).

Sources: Triton, docs/protocol/extension_classification.md; its
`TopkClassifications` (src/classification.cc) and the shape it writes
(src/http_server.cc, src/grpc/infer_handler.cc: `[batch_size, min(K, batch1 elements)]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gateway.catalog import ModelInfo
from gateway.codecs.oip_raw import datatype_of
from gateway.core.errors import BadRequest

EXTENSION = "classification"
PARAMETER = "classification"


def requested_count(name: str, parameters: Mapping[str, Any]) -> int | None:
    """The K a REST output's `parameters` ask for (None: no classification).

    Raises:
        BadRequest: K is not a positive integer.
    """
    if PARAMETER not in parameters:
        return None
    count = parameters[PARAMETER]
    if type(count) is not int or count < 1:
        raise BadRequest(f"output '{name}': parameter '{PARAMETER}' must be a positive integer")
    return count


def grpc_counts(request: Any) -> dict[str, int]:
    """{output name: K} of a `ModelInferRequest`'s requested outputs.

    Raises:
        BadRequest: a `classification` parameter that is not a positive int64_param.
    """
    counts = {}
    for output in request.outputs:
        if PARAMETER not in output.parameters:
            continue
        parameter = output.parameters[PARAMETER]
        if parameter.WhichOneof("parameter_choice") != "int64_param":
            raise BadRequest(f"output '{output.name}': parameter '{PARAMETER}' must be int64")
        count = requested_count(output.name, {PARAMETER: parameter.int64_param})
        if count is not None:
            counts[output.name] = count
    return counts


def check(info: ModelInfo, counts: Mapping[str, int]) -> None:
    """Every output asked to classify is a numeric `[batch, classes]` tensor of the model.

    Raises:
        BadRequest: naming the output and its datatype and shape.
    """
    specs = {t.name: t for t in info.outputs}
    for name in counts:
        spec = specs.get(name)
        if spec is None:
            raise BadRequest(f"unknown output '{name}'; {info.name} returns {sorted(specs)}")
        if len(spec.shape) != 2 or spec.dtype.kind not in "fiu":
            shape = list(spec.shape)
            raise BadRequest(
                f"output '{name}': classification needs a [batch, classes] score tensor; "
                f"{name} is {datatype_of(spec.dtype)} {shape}"
            )


def classify(scores: np.ndarray, count: int, as_bytes: bool = False) -> np.ndarray:
    """The top `count` classes of each row of `scores` `[batch, classes]`, as an object
    array `[batch, min(count, classes)]` of `"score:index"` (str; bytes with `as_bytes`)."""
    k = min(count, scores.shape[-1])
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    top = np.take_along_axis(scores, order, axis=-1)
    texts = [f"{float(s):f}:{int(i)}" for s, i in zip(top.ravel(), order.ravel(), strict=True)]
    values = [t.encode() for t in texts] if as_bytes else texts
    return np.array(values, dtype=object).reshape(top.shape)


def apply(
    outputs: dict[str, np.ndarray], counts: Mapping[str, int], as_bytes: bool = False
) -> dict[str, np.ndarray]:
    """`outputs` with each output named in `counts` replaced by its classification."""
    if not counts:
        return outputs
    return {
        name: classify(value, counts[name], as_bytes) if name in counts else value
        for name, value in outputs.items()
    }
