"""What the prediction log holds: one row per routed request and per shadow call.

One record type, `PredictionRecord`, travels from the log's observer of the router's
outcomes (`ExperimentService.observe`, which builds it by keyword) through the bounded
hand-off (`gateway.experiments.log.sink`) and the writer process's pipe
(`gateway.experiments.log.writer`) to the SQL insert, where `row_of` turns it into the
`predictions` table's `COLUMNS`. The work happens per batch, never on the request's own
path: top-1 (`gateway.experiments.log.top1.summarise`) when the batch is handed to the
writer, hashing the routing key and the SQL in the writer.

This module imports nothing heavy (no numpy): the writer process imports it.
"""

from __future__ import annotations

import hashlib
import json
import operator
import pickle
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

COLUMNS = (
    "request_id", "kind", "ts", "experiment", "model", "arm", "version", "key_hash",
    "latency_ms", "status", "top1", "prob", "agreed", "failover", "framework",
)  # fmt: skip
Row = tuple[Any, ...]  # one row of SQL parameters, in `COLUMNS` order
# Arrival (issue 23): every log write (a batch of rows, a feedback call) stamps its rows'
# `logged_at` with the database's clock (`Database.now_sql`) and commits within
# COMMIT_BOUND_S of it or rolls back (the batch is sent again, with a new stamp). So a
# reader at database time T sees every row stamped at or before T - LOOK_LAG_S: what the
# rollout controller's incremental looks (`log.increments`) read up to.
COMMIT_BOUND_S = 2.0
LOOK_LAG_S = 2 * COMMIT_BOUND_S


@dataclass(slots=True)
class PredictionRecord:
    """One routed request (`kind="serve"`) or shadow call (`kind="shadow"`) of the log.

    Built by keyword on the event loop, one per request (`prediction_record`, the fast
    way): references and scalars only, no computation. A slotted dataclass, not frozen (a
    frozen field costs an `object.__setattr__`), so `summarise` takes top-1 in place, off
    the request's path.

    Attributes:
        request_id: the client's `X-Request-Id` or the one the gateway assigned.
        kind: `serve` (the call whose answer the client got) or `shadow`.
        ts: wall-clock time of the outcome, seconds since the epoch.
        experiment: the running experiment whose split routed the request, else None.
        model: the model's name.
        arm: the arm's name (`gateway.core.arms`; `tensorflow`/`pytorch` for a config
            that names no arms): the routed arm, or for a failover or shadow call the arm
            of the framework called.
        version: the version that answered (or was asked for), None when unknown.
        routing_key: the sticky key, if any; the writer stores only its hash (`key_hash`).
        latency_s: seconds, the client's whole wait (serve) or the shadow call's own.
        status: 200, or the HTTP status of the error.
        agreed: shadow calls only: did the shadow arm's top-1 match the answer's.
        failover: the answer came from the other arm after the chosen one failed.
        outputs: the answer's tensors until top-1 is taken (`summarise`), then None.
        top1: the first example's class, once taken from `outputs`.
        prob: the first example's probability of `top1`, when the answer has one.
        framework: the framework called (`tensorflow`, `pytorch`); None in rows logged
            before arms had names (their `arm` is the framework).
    """

    request_id: str
    kind: str
    ts: float
    experiment: str | None
    model: str
    arm: str
    version: int | None
    routing_key: str | None
    latency_s: float
    status: int
    agreed: bool | None = None
    failover: bool = False
    outputs: dict[str, np.ndarray] | None = None
    top1: int | None = None
    prob: float | None = None
    framework: str | None = None


def prediction_record(
    *,
    request_id: str,
    kind: str,
    ts: float,
    experiment: str | None,
    model: str,
    arm: str,
    version: int | None,
    routing_key: str | None,
    latency_s: float,
    status: int,
    agreed: bool | None = None,
    failover: bool = False,
    outputs: dict[str, np.ndarray] | None = None,
    framework: str | None = None,
) -> PredictionRecord:
    """A new record, its fields by keyword (see `PredictionRecord`), at a function call's
    cost: 0.23 us, against 0.49 us for `PredictionRecord(...)` by keyword, for which
    CPython packs the keywords into a dict and out again (measured, issue 21). The
    request's path builds its record here; the order below is the fields' (a test holds
    the two equal)."""
    return PredictionRecord(
        request_id, kind, ts, experiment, model, arm, version, routing_key, latency_s,
        status, agreed, failover, outputs, None, None, framework,
    )  # fmt: skip


FIELDS = tuple(f.name for f in fields(PredictionRecord))
_VALUES = operator.attrgetter(*FIELDS)


def encode_batch(records: Sequence[PredictionRecord]) -> bytes:
    """The writer's pipe format of one batch (top-1 taken: `outputs` must be None): the
    pickled list of each record's field values, in `FIELDS` order.

    Values, not the records: pickling a slotted dataclass costs 2.8 us a record, its
    values 0.15 us (plus 0.1 us to read them), on the gateway's event loop (issue 21)."""
    return pickle.dumps([_VALUES(record) for record in records], pickle.HIGHEST_PROTOCOL)


def decode_batch(payload: bytes) -> list[PredictionRecord]:
    """The records of an `encode_batch` payload (the writer's side).

    Raises:
        pickle.UnpicklingError, TypeError, ValueError: the payload is not a batch.
    """
    return [_from_values(values) for values in pickle.loads(payload)]


def _from_values(values: tuple[Any, ...]) -> PredictionRecord:
    if len(values) != len(FIELDS):
        raise ValueError(f"a record has {len(FIELDS)} fields, not {len(values)}")
    return PredictionRecord(*values)


def key_hash(key: str | None) -> str | None:
    """A stable, non-reversible stand-in for the routing key (it may identify a user)."""
    if key is None:
        return None
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def row_of(record: PredictionRecord) -> Row:
    """The `COLUMNS` row of one record whose top-1 was taken (`outputs` is not stored):
    the routing key hashed, the latency in milliseconds (4 decimals), flags as 0/1."""
    agreed = record.agreed
    return (
        record.request_id, record.kind, record.ts, record.experiment, record.model,
        record.arm, record.version, key_hash(record.routing_key),
        round(record.latency_s * 1000, 4), record.status, record.top1, record.prob,
        None if agreed is None else int(agreed), int(record.failover), record.framework,
    )  # fmt: skip


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
