"""Where the prediction log is kept: SQLite (default) or PostgreSQL, one SQL dialect.

Every method is synchronous and is called from one worker thread only (the log's
executor), so connections are never shared between threads. The connection and the
dialect come from `gateway.control.database`; experiments' state has its own tables
(`gateway.experiments.state_store`) in the same database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from gateway.control.database import (
    LOG_TIMEOUTS,
    Database,
    Transaction,
    add_column,
    open_database,
    open_postgres,
    open_sqlite,
)
from gateway.experiments.log.aggregates import LOOKS, Aggregator, ExperimentAggregates
from gateway.experiments.log.histograms import HistogramReader, ReportHistograms
from gateway.experiments.log.increments import IncrementalLooks
from gateway.experiments.log.labels import check_model_labels
from gateway.experiments.log.records import (
    COLUMNS,
    COMMIT_BOUND_S,
    LOOK_LAG_S,
    Event,
    FeedbackResult,
    Row,
)
from gateway.experiments.log.writer import insert_rows
from gateway.experiments.state_store import SCHEMA as STATE_SCHEMA
from gateway.experiments.state_store import read_events
from gateway.experiments.stats.live import error_rate

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS predictions (
        request_id TEXT NOT NULL, kind TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        experiment TEXT, model TEXT NOT NULL, arm TEXT NOT NULL, version INTEGER,
        key_hash TEXT, latency_ms DOUBLE PRECISION NOT NULL, status INTEGER NOT NULL,
        top1 INTEGER, prob DOUBLE PRECISION, agreed INTEGER, failover INTEGER NOT NULL,
        framework TEXT, PRIMARY KEY (request_id, kind))""",
    # issue 22: `arm` names an arm, `framework` the framework called (older rows: NULL)
    add_column("predictions", "framework", "TEXT"),
    "CREATE INDEX IF NOT EXISTS predictions_by_experiment ON predictions (experiment, ts)",
    "CREATE INDEX IF NOT EXISTS predictions_by_ts ON predictions (ts)",
    """CREATE TABLE IF NOT EXISTS feedback (
        request_id TEXT PRIMARY KEY, label INTEGER NOT NULL, ts DOUBLE PRECISION NOT NULL)""",
    # the rollout controller's cue (`watermark`) and the retention's purge read it by ts
    "CREATE INDEX IF NOT EXISTS feedback_by_ts ON feedback (ts)",
    # issue 23: when each row arrived (the database's clock; older rows: NULL), what the
    # rollout controller's incremental looks read by (`records.COMMIT_BOUND_S`)
    add_column("predictions", "logged_at", "DOUBLE PRECISION"),
    add_column("feedback", "logged_at", "DOUBLE PRECISION"),
    "CREATE INDEX IF NOT EXISTS predictions_by_arrival ON predictions (experiment, logged_at)",
    "CREATE INDEX IF NOT EXISTS feedback_by_arrival ON feedback (logged_at)",
)
# One row of `records()`: the prediction columns, then the fed-back label (or None).
RECORD_COLUMNS = (*COLUMNS, "label")
_CHUNK = 500
PURGE_CHUNK = 10_000  # rows deleted per transaction by the retention purge


class LogStore(Protocol):
    """A prediction log backend (implement this to log elsewhere)."""

    def write_batch(self, rows: Sequence[Row]) -> None: ...
    def add_feedback(
        self, items: Sequence[tuple[str, int]], ts: float, classes: Mapping[str, int] | None = None
    ) -> list[FeedbackResult]: ...
    def records(self, experiment: str | None, since: float | None = None) -> list[Row]: ...
    def aggregates(
        self,
        experiment: str,
        arms: Sequence[str] | None,
        segment_starts: Sequence[float] = (),
        since: float | None = None,
        looks: int = ...,
    ) -> ExperimentAggregates: ...
    def step_aggregates(
        self,
        experiment: str,
        arms: Sequence[str] | None,
        segment_starts: Sequence[float] = (),
        since: float | None = None,
    ) -> ExperimentAggregates: ...
    def histograms(self, experiment: str, arms: Sequence[str]) -> ReportHistograms: ...
    def events(self, experiment: str | None = None) -> list[Event]: ...
    def watermark(self, experiment: str, since: float) -> Watermark | None: ...
    def ping(self) -> None: ...
    def arm_counts(self, experiment: str) -> dict[str, int]: ...
    def summary(self) -> dict[str, dict[str, dict[str, Any]]]: ...
    def purge(self, before_ts: float, chunk: int = ...) -> int: ...
    def close(self) -> None: ...


class SqlLogStore:
    """The shared implementation over one `Database` (SQLite or PostgreSQL).

    Args:
        db: the log's database.
        look_lag_s: how far behind the database's clock the rollout controller's looks
            read (`records.LOOK_LAG_S`, what the writers' commit bound needs; 0 in tests
            that write synchronously).
    """

    def __init__(self, db: Database, look_lag_s: float = LOOK_LAG_S) -> None:
        self._db = db
        self.placeholder = db.placeholder
        self._looks: IncrementalLooks | None = None  # the controller's looks, once asked
        self._look_lag_s = look_lag_s
        db.create_schema((*_SCHEMA, *STATE_SCHEMA))  # readers of a fresh database find both

    def _marks(self, count: int) -> str:
        return self._db.marks(count)

    def write_batch(self, rows: Sequence[Row]) -> None:
        insert_rows(self._db, rows)

    def add_feedback(
        self, items: Sequence[tuple[str, int]], ts: float, classes: Mapping[str, int] | None = None
    ) -> list[FeedbackResult]:
        """Store labels for requests: `recorded` when the request's row is logged,
        `pending` when it is not yet (another worker's log writes it within its linger;
        the label joins it then, by request id), `duplicate` for the same label again,
        `conflict` for another one. Pending labels never joined are purged with the
        log's retention.

        Raises:
            LabelOutOfRange: a label outside its logged model's `classes` (nothing stored).
        """
        ids = [request_id for request_id, _ in items]
        served = self._served(ids)
        check_model_labels(items, served, classes or {})
        existing = self._labels(ids)
        results: list[FeedbackResult] = []
        fresh: dict[str, int] = {}
        for request_id, label in items:
            outcome = _feedback_outcome(request_id, label, served, {**existing, **fresh})
            if outcome in ("recorded", "pending"):
                fresh[request_id] = label
            results.append(FeedbackResult(request_id, outcome))
        sql = (
            f"INSERT INTO feedback (request_id, label, ts, logged_at)"
            f" VALUES ({self._marks(3)}, {self._db.now_sql}) ON CONFLICT DO NOTHING"
        )
        with self._db.transaction(within_s=COMMIT_BOUND_S) as cursor:
            cursor.executemany(sql, [(rid, label, ts) for rid, label in fresh.items()])
        return results

    def records(self, experiment: str | None, since: float | None = None) -> list[Row]:
        """Rows (`RECORD_COLUMNS`) of `experiment` (every row when None) logged at or after
        `since` (seconds since the epoch; every row when None), oldest first."""
        columns = ", ".join(f"p.{c}" for c in COLUMNS)
        sql = (
            f"SELECT {columns}, f.label FROM predictions p LEFT JOIN feedback f"
            " ON f.request_id = p.request_id AND p.kind = 'serve' WHERE 1 = 1"
        )
        params: tuple[Any, ...] = ()
        if experiment is not None:
            sql, params = sql + f" AND p.experiment = {self.placeholder}", (experiment,)
        if since is not None:
            sql, params = sql + f" AND p.ts >= {self.placeholder}", (*params, since)
        order = f" ORDER BY p.ts, p.request_id{self._db.byte_order}, p.kind"
        return self._fetch(sql + order, params)

    def aggregates(
        self,
        experiment: str,
        arms: Sequence[str] | None,
        segment_starts: Sequence[float] = (),
        since: float | None = None,
        looks: int = LOOKS,
    ) -> ExperimentAggregates:
        """The experiment's sufficient statistics, computed by the database (rows at or
        after `since` when given; `arms` None = the served arms; `segment_starts` the
        split timeline's starts; `looks`: the history's, 0 for none): see
        `gateway.experiments.log.aggregates`."""
        return Aggregator(self._db, experiment, since).collect(arms, segment_starts, looks)

    def step_aggregates(
        self,
        experiment: str,
        arms: Sequence[str] | None,
        segment_starts: Sequence[float] = (),
        since: float | None = None,
    ) -> ExperimentAggregates:
        """The rollout controller's look at a step (rows at or after `since`): the same
        sums as `aggregates(..., looks=0)` without the paired shadow analysis, reading only
        the rows and labels that arrived since this store's previous look at that step
        (`gateway.experiments.log.increments`; this store object keeps its state)."""
        if self._looks is None:
            self._looks = IncrementalLooks(self._db, lag_s=self._look_lag_s)
        return self._looks.collect(experiment, arms, segment_starts, since)

    def histograms(self, experiment: str, arms: Sequence[str]) -> ReportHistograms:
        """The report's traffic and latency histograms of `arms`, binned by the database
        (one count per arm and bin): see `gateway.experiments.log.histograms`."""
        return HistogramReader(self._db, experiment).collect(arms)

    def events(self, experiment: str | None = None) -> list[Event]:
        """Experiments' transitions (written by the experiments' state store), oldest first."""
        return read_events(self._db, experiment)

    def watermark(self, experiment: str, since: float) -> Watermark | None:
        """What changes when rows or labels come (`Watermark`), or None when `experiment`
        has no row at or after `since`. Four index lookups (`predictions_by_experiment`,
        `feedback_by_ts`, and both `_by_arrival`), whatever the log's size: the rollout
        controller asks every tick, in the serving process."""
        params = (experiment, since, experiment)
        latest, labelled, *logged = self._fetch(watermark_sql(self.placeholder), params)[0]
        if latest is None:
            return None
        arrived = max((float(t) for t in logged if t is not None), default=0.0)
        return Watermark(float(latest), float(labelled or 0.0), arrived)

    def ping(self) -> None:
        """One round trip to the database (`SELECT 1`): whether it answers at all.

        Raises:
            StoreUnavailable: it is down (a hung one: the caller's bound, `PredictionLog.run`).
        """
        self._fetch("SELECT 1", ())

    def arm_counts(self, experiment: str) -> dict[str, int]:
        """Successful served requests per arm of `experiment` (every process's)."""
        sql = (
            "SELECT arm, COUNT(*) FROM predictions WHERE kind = 'serve' AND status = 200"
            f" AND experiment = {self.placeholder} GROUP BY arm"
        )
        return {row[0]: int(row[1]) for row in self._fetch(sql, (experiment,))}

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Live figures per experiment and arm, aggregated by the database."""
        sql = (
            "SELECT p.experiment, p.arm, COUNT(*),"
            " SUM(CASE WHEN p.status <> 200 THEN 1 ELSE 0 END), AVG(p.latency_ms),"
            " COUNT(f.label), SUM(CASE WHEN f.label = p.top1 THEN 1 ELSE 0 END)"
            " FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id"
            " WHERE p.kind = 'serve' AND p.experiment IS NOT NULL GROUP BY p.experiment, p.arm"
        )
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for experiment, arm, n, errors, mean, labelled, correct in self._fetch(sql, ()):
            result.setdefault(experiment, {})[arm] = _live_figures(
                int(n), int(errors or 0), mean, int(labelled), int(correct or 0)
            )
        return result

    def purge(self, before_ts: float, chunk: int = PURGE_CHUNK) -> int:
        """Retention: drop predictions older than `before_ts` and their feedback, `chunk`
        rows a transaction, so the log's writer waits for one chunk at most, never for
        the whole purge (SQLite has one writer at a time; a 10M-row purge in one
        transaction would hold it for minutes)."""
        p = self.placeholder
        old = f"SELECT request_id, kind FROM predictions WHERE ts < {p} LIMIT {int(chunk)}"
        deleted = self._delete_chunks(
            f"DELETE FROM predictions WHERE (request_id, kind) IN ({old})", (before_ts,), chunk
        )
        orphans = (  # labels of purged rows, and pending ones as old, never joined
            f"SELECT request_id FROM feedback WHERE ts < {p} AND request_id NOT IN"
            f" (SELECT request_id FROM predictions) LIMIT {int(chunk)}"
        )
        self._delete_chunks(
            f"DELETE FROM feedback WHERE request_id IN ({orphans})", (before_ts,), chunk
        )
        return deleted

    def _delete_chunks(self, sql: str, params: tuple[Any, ...], chunk: int) -> int:
        total = 0
        while True:
            with self._transaction() as cursor:
                cursor.execute(sql, params)
                count = int(cursor.rowcount or 0)
            total += count
            if count < chunk:
                return total

    def close(self) -> None:
        self._db.close()

    def _served(self, ids: list[str]) -> dict[str, str]:
        """Request id -> model of the served requests among `ids`."""
        found: dict[str, str] = {}
        for chunk in _chunks(ids):
            sql = (
                f"SELECT request_id, model FROM predictions WHERE kind = 'serve'"
                f" AND request_id IN ({self._marks(len(chunk))})"
            )
            found.update((row[0], row[1]) for row in self._fetch(sql, tuple(chunk)))
        return found

    def labels(self, ids: list[str]) -> dict[str, int]:
        """The labels fed back for these request ids (`dualserve replay` joins by id)."""
        return self._labels(ids)

    def _labels(self, ids: list[str]) -> dict[str, int]:
        labels: dict[str, int] = {}
        for chunk in _chunks(ids):
            marks = self._marks(len(chunk))
            sql = f"SELECT request_id, label FROM feedback WHERE request_id IN ({marks})"
            labels.update((row[0], int(row[1])) for row in self._fetch(sql, tuple(chunk)))
        return labels

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        return self._db.fetch(sql, params)

    def _transaction(self) -> Transaction:
        return self._db.transaction()


class Watermark(NamedTuple):
    """The log's latest row of an experiment at or after a time, and latest label.

    Attributes:
        latest: the latest row's ts; labelled: the latest label's ts (0: none), seconds.
        logged: the latest `logged_at` of the experiment's rows and of any label (the
            database's clock; 0: none): an incremental look whose `upto` is below it
            has rows still to read.
    """

    latest: float
    labelled: float
    logged: float


def watermark_sql(p: str) -> str:
    """`SqlLogStore.watermark`'s statement (parameters: experiment, since, experiment)."""
    return (
        f"SELECT (SELECT MAX(ts) FROM predictions WHERE experiment = {p} AND ts >= {p}),"
        " (SELECT MAX(ts) FROM feedback),"
        f" (SELECT MAX(logged_at) FROM predictions WHERE experiment = {p}),"
        " (SELECT MAX(logged_at) FROM feedback)"
    )


def _feedback_outcome(
    request_id: str, label: int, served: Mapping[str, str], labels: dict[str, int]
) -> str:
    if request_id in labels:
        return "duplicate" if labels[request_id] == label else "conflict"
    return "recorded" if request_id in served else "pending"


def _live_figures(n: int, errors: int, mean: Any, labelled: int, correct: int) -> dict[str, Any]:
    return {
        "requests": n,
        "errors": errors,
        "error_rate": error_rate(errors, n),
        "mean_latency_ms": None if mean is None else round(float(mean), 4),
        "labelled": labelled,
        "accuracy": round(correct / labelled, 6) if labelled else None,
    }


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class SqliteLogStore(SqlLogStore):
    """A file in WAL mode: readers (reports, analysis) never block the writer."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(open_sqlite(path))


class PostgresLogStore(SqlLogStore):
    def __init__(self, url: str) -> None:
        super().__init__(open_postgres(url, LOG_TIMEOUTS))


def open_store(database_url: str | None, data_dir: Path | None) -> LogStore:
    """The log in `open_database(database_url, data_dir)` (see there)."""
    return SqlLogStore(open_database(database_url, data_dir, LOG_TIMEOUTS))
