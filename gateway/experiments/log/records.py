"""What the prediction log holds: one row per routed request and per shadow call.

The log's observer of the router's outcomes builds an `Outcome` (a few references, no
computation) and hands it to the log; the rest happens per batch, never on the request's
own path: top-1 (`flat_record`) when the batch is handed to the writer, hashing the
routing key and the SQL in the writer (`gateway.experiments.log.writer`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

# The row's rules live with the writer process (it imports no numpy); re-exported here.
from gateway.experiments.log.writer import COLUMNS as COLUMNS
from gateway.experiments.log.writer import FlatRecord, row_of
from gateway.experiments.log.writer import Row as Row
from gateway.experiments.log.writer import key_hash as key_hash


class Outcome(NamedTuple):
    """One routed request (`kind="serve"`) or shadow call (`kind="shadow"`), as the log's
    observer hands it off: references and scalars only, no computation.

    A `NamedTuple`, not a dataclass: the observer builds one per request on the event loop,
    and a tuple costs a third of a slotted dataclass built by keyword (0.58 vs 1.38 us,
    measured; issue 15).

    Attributes:
        latency_s: seconds, the client's whole wait (serve) or the shadow call's own.
        outputs: the answer's tensors (top-1 is taken off the hot path), None on errors.
        ts: wall-clock time of the outcome, seconds since the epoch.
        agreed: shadow calls only: did the shadow arm's top-1 match the answer's.
    """

    request_id: str
    experiment: str | None
    model: str
    arm: str
    version: int | None
    routing_key: str | None
    latency_s: float
    status: int
    outputs: dict[str, np.ndarray] | None
    ts: float
    kind: str = "serve"
    agreed: bool | None = None
    failover: bool = False


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


def flat_record(outcome: Outcome) -> FlatRecord:
    """What the writer needs of one outcome (`log_writer.FlatRecord`): top-1 taken, the
    tensors dropped, so the batch pickles small."""
    cls, prob = top1(outcome.outputs)
    return (
        outcome.request_id, outcome.kind, outcome.ts, outcome.experiment, outcome.model,
        outcome.arm, outcome.version, outcome.routing_key, outcome.latency_s,
        outcome.status, cls, prob, outcome.agreed, outcome.failover,
    )  # fmt: skip


def to_row(outcome: Outcome) -> Row:
    """The `COLUMNS` row of one outcome."""
    return row_of(flat_record(outcome))


@dataclass(frozen=True)
class Event:
    """An experiment's life: define, start, pause, end, split, with time and reason."""

    experiment: str
    action: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def as_row(self) -> Row:
        return (self.experiment, self.ts, self.action, self.reason, json.dumps(self.details))

    @classmethod
    def from_row(cls, row: Row) -> Event:
        experiment, ts, action, reason, details = row
        return cls(experiment, action, reason, json.loads(details or "{}"), float(ts))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FeedbackResult:
    """Per request id: `recorded`, `pending` (its row is not logged yet: stored, joined
    when it is), `duplicate` (same label again), `conflict`."""

    request_id: str
    outcome: str

    @property
    def status(self) -> int:
        statuses = {"recorded": 201, "pending": 202, "duplicate": 200, "conflict": 409}
        return statuses.get(self.outcome, 404)
