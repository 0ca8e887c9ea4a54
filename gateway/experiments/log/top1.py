"""What the log keeps of an answer: the first example's class and its probability.

Taken per batch, on the gateway's side of the writer's pipe (the writer imports no
numpy, and the tensors never cross the pipe), never on the request's own path.
"""

from __future__ import annotations

import numpy as np

from gateway.experiments.log.records import PredictionRecord, Row, row_of


def top1(outputs: dict[str, np.ndarray] | None) -> tuple[int | None, float | None]:
    """Class and probability of the first example (feedback labels one request).

    Reads single elements with `ndarray.item` (flat C-order index: the first example's
    class is element 0, its probability of class `c` element `c`), which costs a tenth of
    reshaping and indexing (measured, issue 15).
    """
    if not outputs:
        return None, None
    probs = outputs.get("probabilities")
    first = None if probs is None else _first_row_size(probs)
    if "class" in outputs:
        cls = int(np.asarray(outputs["class"]).item(0))
    elif probs is not None:
        cls = int(np.argmax(np.asarray(probs).reshape(len(probs), -1)[0]))
    else:
        return None, None
    if probs is None or first is None or not 0 <= cls < first:
        return cls, None
    return cls, float(np.asarray(probs).item(cls))


def _first_row_size(probs: np.ndarray) -> int | None:
    array = np.asarray(probs)
    return array.size // len(array) if array.ndim and len(array) else None


def summarise(record: PredictionRecord) -> PredictionRecord:
    """Take top-1 from the record's `outputs` and drop the tensors, in place (so the
    record pickles small); returns the record. A record already summarised is kept."""
    if record.outputs is not None:
        record.top1, record.prob = top1(record.outputs)
        record.outputs = None
    return record


def to_row(record: PredictionRecord) -> Row:
    """The `COLUMNS` row of one record (top-1 taken first)."""
    return row_of(summarise(record))
