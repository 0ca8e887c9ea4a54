"""The rollout controller's looks, incremental: only what arrived since the last look (issue 23).

Under traffic the controller looks at its current step every tick. Aggregating the whole
step again at each look (`Aggregator.collect`) costs the step's rows each time; here the
analyst keeps the step's per-unit sums between looks and asks the database only for the
rows and labels that arrived since the last one.

Arrival, not request time. Rows come late: a writer that waited for the database sends
its batch again later, with the requests' own ts. So every log write stamps its rows'
`logged_at` with the database's clock and commits within `records.COMMIT_BOUND_S` of it
or rolls back. A look at database time T reads the window (previous upto, upto] with
upto = T - `records.LOOK_LAG_S`: every row stamped at or before upto is visible by then,
and no row is read twice. Rows logged before the column existed (NULL) count as arrived
before the step's first look.

Labels arrive apart from their rows. A row read in a window is counted with the labels
stamped at or before that window's upto. A label stamped in a later window is counted then,
if its row was already read. Each (row, label) pair is counted once, whichever came first.

What a look returns is `ExperimentAggregates` of the rows at or after the step's start
(`since`), as `Aggregator.collect(arms, segment_starts, looks=0)` gives for the rows
logged up to `upto`: every arm's ratio sums, shadow counts, first-served units per
segment, and latency sample. The one exception is the paired shadow analysis, which is
None: the controller does not read it (`rollout.next_rollout_action`). Tests compare both
paths on seeded logs that arrive in pieces, on SQLite and PostgreSQL.

What the contract cannot see, a whole read every `RECONCILE_S` (10 minutes) corrects:
a COMMIT that itself waited past the lag (a synchronous standby away: the bound is
checked before it), a gateway of an older version writing rows without `logged_at`
during a rolling upgrade, rows the retention purged from a step older than
`retention_days`, the database's clock stepped back. Between two whole reads such rows are
missed (or, purged, still counted); the cost of the correction is one whole read of the
step per 10 minutes.

State per (experiment, since, arms), the last `STATES` kept:

- per arm and unit: served requests, errors, labelled and correct answers;
- per unit: its first served row (ts, request id, arm), for the sample-ratio check;
- per arm: the shadow calls compared and agreed;
- per arm: the latency sample's rows (`aggregates.latency_sample`). Its threshold only
  falls as an arm's requests grow, so the rows kept are filtered, never read again.

Units are held as 64-bit BLAKE2b digests of the unit key. Two units collide with
probability about n^2 / 2^65 (3e-8 at 1M units). Memory is about 90 bytes per unit (40 per
arm it was served by, 50 for its first row), plus each arm's sample (~`SAMPLE_ROWS`
rows). A look copies it (a failed read leaves the last state whole), so 1M units peak
near 200 MB. It is sized by units, never by requests. The analyst process keeps it,
never the serving process.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.control.database import Database
from gateway.experiments.log.aggregates import (
    SAMPLE_KEY,
    SAMPLE_ROWS,
    UNIT,
    Aggregator,
    ArmLook,
    ExperimentAggregates,
    LatencySample,
    RatioSums,
    sample_fraction,
    sample_threshold,
    stream_batches,
)
from gateway.experiments.log.records import LOOK_LAG_S

STATES = 16  # steps kept: one per running rollout (more rollouts at once re-read theirs)
RECONCILE_S = 600.0  # a step's state is read whole again this often (see the docstring)


def unit_digest(unit: str) -> int:
    """A unit key's 64-bit BLAKE2b digest (an unsigned int)."""
    return int.from_bytes(hashlib.blake2b(unit.encode(), digest_size=8).digest(), "little")


def _digests(units: Sequence[str]) -> np.ndarray:
    return np.fromiter((unit_digest(u) for u in units), np.uint64, len(units))


class _Sums:
    """Sorted unit digests and their integer columns (served, errors, labelled, correct)."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)
        self.values = np.zeros((0, 4), np.int64)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if keys.size == 0:
            return
        keys, inverse = np.unique(keys, return_inverse=True)
        summed = np.zeros((keys.size, 4), np.int64)
        np.add.at(summed, inverse.ravel(), values)
        pos = np.searchsorted(self.keys, keys)
        found = pos < self.keys.size
        found[found] = self.keys[pos[found]] == keys[found]
        self.values[pos[found]] += summed[found]
        new = ~found
        self.keys = np.insert(self.keys, pos[new], keys[new])
        self.values = np.insert(self.values, pos[new], summed[new], axis=0)

    def successful(self) -> int:
        """The arm's successful requests (served less errors)."""
        return int((self.values[:, 0] - self.values[:, 1]).sum())

    def look(self) -> ArmLook:
        """The arm's ratio sums: errors over requests, correct over labelled, per unit."""
        n, e, m, c = (self.values[:, i].astype(np.float64) for i in range(4))
        return ArmLook(_ratio(e, n), _ratio(c, m))


def _ratio(x: np.ndarray, y: np.ndarray) -> RatioSums:
    return RatioSums(
        int((y > 0).sum()),
        float(x.sum()),
        float(y.sum()),
        float((x * x).sum()),
        float((y * y).sum()),
        float((x * y).sum()),
    )


class _Firsts:
    """Per unit (sorted digests): its first served row's ts, request id and arm index."""

    def __init__(self) -> None:
        self.keys = np.empty(0, np.uint64)
        self.ts = np.empty(0, np.float64)
        self.rid = np.empty(0, "S1")  # UTF-8 bytes: their order is the code points'
        self.arm = np.empty(0, np.int16)

    def add(self, keys: np.ndarray, ts: np.ndarray, rid: np.ndarray, arm: np.ndarray) -> None:
        if keys.size == 0:
            return
        order = np.lexsort((rid, ts, keys))  # by unit, then (ts, request id)
        keys, ts, rid, arm = keys[order], ts[order], rid[order], arm[order]
        first = np.r_[True, keys[1:] != keys[:-1]]  # a digest shared by two units: the earlier
        keys, ts, rid, arm = keys[first], ts[first], rid[first], arm[first]
        if rid.dtype.itemsize > self.rid.dtype.itemsize:
            self.rid = self.rid.astype(rid.dtype)  # wide enough for the new ids
        pos = np.searchsorted(self.keys, keys)
        found = pos < self.keys.size
        found[found] = self.keys[pos[found]] == keys[found]
        at = pos[found]
        old_ts, old_rid = self.ts[at], self.rid[at]
        new_ts, new_rid = ts[found], rid[found]
        earlier = (new_ts < old_ts) | ((new_ts == old_ts) & (new_rid < old_rid))
        self.ts[at[earlier]] = new_ts[earlier]  # a late row that came first
        self.rid[at[earlier]] = new_rid[earlier]
        self.arm[at[earlier]] = arm[found][earlier]
        new = ~found
        self.keys = np.insert(self.keys, pos[new], keys[new])
        self.ts = np.insert(self.ts, pos[new], ts[new])
        self.rid = np.insert(self.rid, pos[new], rid[new])
        self.arm = np.insert(self.arm, pos[new], arm[new])

    def counts(self, arms: int, starts: Sequence[float]) -> list[list[int]]:
        """Per arm index, units first served by it per segment of `starts` (a unit is in
        the last segment starting at or before its first ts, or the first)."""
        segments = max(1, len(starts))
        if len(starts) > 1:
            index = np.searchsorted(np.asarray(starts, float), self.ts, side="right") - 1
            index = np.clip(index, 0, segments - 1)
        else:
            index = np.zeros(self.ts.size, np.int64)
        table = np.zeros((arms, segments), np.int64)
        np.add.at(table, (self.arm.astype(np.int64), index), 1)
        return table.tolist()


@dataclass
class _Sample:
    """One arm's latency sample rows, oldest first (ts, request id)."""

    unit: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    latency: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    rid: np.ndarray = field(default_factory=lambda: np.empty(0, "U1"))
    key: np.ndarray = field(default_factory=lambda: np.empty(0, "U1"))

    def merge(self, rows: list[tuple[Any, ...]], threshold: str | None) -> None:
        """Add `rows` (unit, ts, latency, request id, sample key), then keep those whose key
        is below `threshold` (None: every row), oldest first."""
        if rows:
            unit, ts, latency, rid, key = zip(*rows, strict=True)
            self.unit = np.concatenate([self.unit, np.array(unit, dtype=object)])
            self.ts = np.concatenate([self.ts, np.array(ts, dtype=np.float64)])
            self.latency = np.concatenate([self.latency, np.array(latency, dtype=np.float64)])
            self.rid = np.concatenate([self.rid, np.array(rid, dtype=str)])
            self.key = np.concatenate([self.key, np.array(key, dtype=str)])
        keep = np.ones(self.ts.size, bool) if threshold is None else self.key < threshold
        order = np.lexsort((self.rid[keep], self.ts[keep]))
        for name in ("unit", "ts", "latency", "rid", "key"):
            setattr(self, name, getattr(self, name)[keep][order])


@dataclass
class _Step:
    """What the looks of one (experiment, since, arms) have read so far."""

    upto: float | None = None  # the last look's upto (database clock); None: no look yet
    whole_at: float = 0.0  # when it was read whole (the looks' clock, seconds)
    served: set[str] = field(default_factory=set)
    sums: dict[str, _Sums] = field(default_factory=dict)
    firsts: _Firsts = field(default_factory=_Firsts)
    shadow: dict[str, list[int]] = field(default_factory=dict)
    samples: dict[str, _Sample] = field(default_factory=dict)


class IncrementalLooks:
    """The rollout controller's looks at its steps, each reading what arrived since the last.

    Args:
        db: the log's database (the analyst's connection).
        sample_rows: successful requests per arm read for its percentiles, about.
        lag_s: a look with no `upto` reads up to the database's now less this (seconds).
    """

    def __init__(
        self,
        db: Database,
        sample_rows: int = SAMPLE_ROWS,
        lag_s: float = LOOK_LAG_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db, self._p, self._sample_rows = db, db.placeholder, sample_rows
        self._lag_s, self._clock = lag_s, clock
        self._steps: OrderedDict[tuple[Any, ...], _Step] = OrderedDict()
        self.rows_read = 0  # rows (groups of a unit's rows, labels, sample rows) fetched

    def collect(
        self,
        experiment: str,
        arms: Sequence[str] | None,
        segment_starts: Sequence[float] = (),
        since: float | None = None,
        upto: float | None = None,
    ) -> ExperimentAggregates:
        """The step's aggregates over the rows logged up to `upto` (the database's clock,
        seconds; None: its now less `lag_s`), reading only what arrived since the
        previous look of the same (experiment, since, arms); the whole step when it has
        none, or its state is `RECONCILE_S` old. An `upto` at or before the previous
        look's answers that look's state (and its `upto`). `arms` None (the served arms,
        which may change): the whole step again (`Aggregator`), without history.

        Raises:
            StoreUnavailable: the database is down; the step's state is kept as it was.
        """
        if arms is None or not arms:
            return Aggregator(self._db, experiment, since).collect(arms, segment_starts, 0)
        chosen = list(arms)
        key = (experiment, since, tuple(chosen))
        step = self._steps.get(key)
        if step is None or self._clock() - step.whole_at > RECONCILE_S:
            step = _Step(whole_at=self._clock())  # read the whole step (again)
        if upto is None:
            upto = float(self._db.fetch(f"SELECT {self._db.now_sql}")[0][0]) - self._lag_s
        if step.upto is None or upto > step.upto:
            step = self._read(step, experiment, chosen, since, upto)
        self._steps[key] = step
        self._steps.move_to_end(key)
        while len(self._steps) > STATES:
            self._steps.popitem(last=False)
        return self._aggregates(step, chosen, segment_starts)

    def _read(
        self, old: _Step, experiment: str, arms: list[str], since: float | None, upto: float
    ) -> _Step:
        """The step after reading the window (old.upto, upto]; `old` is left as it was
        (a failed read keeps the last state whole)."""
        step = _Step(
            upto,
            old.whole_at,
            set(old.served),
            {arm: _copy_sums(s) for arm, s in old.sums.items()},
            _copy_firsts(old.firsts),
            {arm: list(v) for arm, v in old.shadow.items()},
            {arm: _Sample(**vars(s)) for arm, s in old.samples.items()},
        )
        window = _Window(self._p, experiment, since, old.upto, upto)
        self._read_rows(step, window, arms)
        if old.upto is not None:
            self._read_labels(step, window, arms)
        self._read_firsts(step, window, arms)
        self._read_shadow(step, window)
        self._read_samples(step, window, arms)
        return step

    def _read_rows(self, step: _Step, window: _Window, arms: list[str]) -> None:
        where, params = window.rows("p")
        sql = f"""
            SELECT p.arm, {UNIT}, COUNT(*), SUM(CASE WHEN p.status <> 200 THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.status = 200 AND f.label IS NOT NULL
                    AND p.top1 IS NOT NULL THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.status = 200 AND f.label = p.top1 THEN 1 ELSE 0 END)
            FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id
                AND (f.logged_at IS NULL OR f.logged_at <= {self._p})
            WHERE {where} AND p.kind = 'serve' GROUP BY 1, 2"""
        self._add_sums(step, self._stream(sql, (window.upto, *params)), arms, served=True)

    def _read_labels(self, step: _Step, window: _Window, arms: list[str]) -> None:
        """Labels stamped in the window whose rows an earlier window read. `CROSS JOIN`:
        SQLite walks the window's labels (`feedback_by_arrival`) and finds each row by its
        key, never the experiment's rows (PostgreSQL plans it as an inner join)."""
        p = self._p
        where, params = window.rows("p", before=True)
        sql = f"""
            SELECT p.arm, {UNIT}, 0, 0,
                SUM(CASE WHEN p.status = 200 AND p.top1 IS NOT NULL THEN 1 ELSE 0 END),
                SUM(CASE WHEN p.status = 200 AND f.label = p.top1 THEN 1 ELSE 0 END)
            FROM feedback f CROSS JOIN predictions p
            WHERE f.logged_at > {p} AND f.logged_at <= {p}
                AND p.request_id = f.request_id AND p.kind = 'serve' AND {where}
            GROUP BY 1, 2"""
        rows = self._stream(sql, (window.after, window.upto, *params))
        self._add_sums(step, rows, arms, served=False)

    def _add_sums(self, step: _Step, batches: Any, arms: list[str], served: bool) -> None:
        """Add each fetched batch of (arm, unit, served, errors, labelled, correct)."""
        for batch in batches:
            grouped: dict[str, tuple[list[str], list[tuple[int, ...]]]] = {}
            for arm, unit, *values in batch:
                if served:
                    step.served.add(str(arm))
                if arm in arms:
                    units, sums = grouped.setdefault(str(arm), ([], []))
                    units.append(unit)
                    sums.append(tuple(int(v or 0) for v in values))
            for arm, (units, sums) in grouped.items():
                target = step.sums.setdefault(arm, _Sums())
                target.add(_digests(units), np.array(sums, np.int64).reshape(-1, 4))

    def _read_firsts(self, step: _Step, window: _Window, arms: list[str]) -> None:
        where, params = window.rows("p")
        sql = f"""
            SELECT unit, ts, request_id, arm FROM (
                SELECT {UNIT} AS unit, p.ts AS ts, p.request_id AS request_id, p.arm AS arm,
                    ROW_NUMBER() OVER (PARTITION BY {UNIT}
                        ORDER BY p.ts, p.request_id{self._db.byte_order}) AS rn
                FROM predictions p WHERE {where} AND p.kind = 'serve'
                    AND p.arm IN ({self._db.marks(len(arms))})
            ) firsts WHERE rn = 1"""
        index = {arm: i for i, arm in enumerate(arms)}
        for batch in self._stream(sql, (*params, *arms)):
            units, ts, rid, arm = zip(*batch, strict=True)
            step.firsts.add(
                _digests(units),
                np.array(ts, np.float64),
                np.array([str(r).encode() for r in rid], dtype=bytes),
                np.array([index[name] for name in arm], np.int16),
            )

    def _read_shadow(self, step: _Step, window: _Window) -> None:
        where, params = window.rows("p")
        sql = (
            f"SELECT p.arm, COUNT(*), SUM(p.agreed) FROM predictions p WHERE {where}"
            " AND p.kind = 'shadow' AND p.agreed IS NOT NULL GROUP BY p.arm"
        )
        for arm, compared, agreed in (row for b in self._stream(sql, params) for row in b):
            counts = step.shadow.setdefault(str(arm), [0, 0])
            counts[0] += int(compared)
            counts[1] += int(agreed or 0)

    def _read_samples(self, step: _Step, window: _Window, arms: list[str]) -> None:
        where, params = window.rows("p")
        for arm in arms:
            fraction = sample_fraction(step.sums.get(arm, _Sums()).successful(), self._sample_rows)
            threshold = sample_threshold(fraction)
            sql = (
                f"SELECT {UNIT}, p.ts, p.latency_ms, p.request_id, {SAMPLE_KEY}"
                f" FROM predictions p WHERE {where} AND p.kind = 'serve' AND p.status = 200"
                f" AND p.arm = {self._p}"
            )
            args: tuple[Any, ...] = (*params, arm)
            if threshold is not None:
                where_key = f" AND {SAMPLE_KEY}{self._db.byte_order} < {self._p}"
                sql, args = sql + where_key, (*args, threshold)
            sample = step.samples.setdefault(arm, _Sample())
            sample.merge([row for b in self._stream(sql, args) for row in b], threshold)

    def _aggregates(
        self, step: _Step, arms: list[str], segment_starts: Sequence[float]
    ) -> ExperimentAggregates:
        empty = _Sums()
        counts = step.firsts.counts(len(arms), segment_starts)
        latency = {}
        for arm in arms:
            sample = step.samples.get(arm, _Sample())
            fraction = sample_fraction(step.sums.get(arm, empty).successful(), self._sample_rows)
            latency[arm] = LatencySample(sample.unit, sample.ts, sample.latency, fraction)
        return ExperimentAggregates(
            arms=arms,
            served_arms=sorted(step.served),
            cuts=np.array([]),
            units_at=[],
            looks={arm: [step.sums.get(arm, empty).look()] for arm in arms},
            shadow={arm: tuple(step.shadow.get(arm, (0, 0))) for arm in arms},  # type: ignore[misc]
            first_served={arm: counts[i] for i, arm in enumerate(arms)},
            latency=latency,
            paired={arm: None for arm in arms[1:]},
            upto=step.upto,
        )

    def _stream(self, sql: str, params: tuple[Any, ...]) -> Iterator[list[tuple[Any, ...]]]:
        for batch in stream_batches(self._db, sql, params):
            self.rows_read += len(batch)
            yield batch


@dataclass(frozen=True)
class _Window:
    """The rows of one experiment at or after `since` that arrived in (after, upto]."""

    p: str
    experiment: str
    since: float | None
    after: float | None
    upto: float

    def rows(self, alias: str, before: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause and its parameters for `alias`'s rows in the window (`before`:
        those that arrived in earlier windows instead)."""
        p, a = self.p, alias
        where = f"{a}.experiment = {p}"
        params: list[Any] = [self.experiment]
        if self.since is not None:  # after a first look, `+ts`: the planners take arrival
            ts = f"{a}.ts" if self.after is None else f"+{a}.ts"  # (no index on an expression)
            where, params = where + f" AND {ts} >= {p}", [*params, self.since]
        if before:  # only asked once a window was read
            where += f" AND ({a}.logged_at IS NULL OR {a}.logged_at <= {p})"
            params.append(self.after)
        elif self.after is None:
            where += f" AND ({a}.logged_at IS NULL OR {a}.logged_at <= {p})"
            params.append(self.upto)
        else:
            where += f" AND {a}.logged_at > {p} AND {a}.logged_at <= {p}"
            params.extend((self.after, self.upto))
        return where, tuple(params)


def _copy_sums(sums: _Sums) -> _Sums:
    copy = _Sums()
    copy.keys, copy.values = sums.keys.copy(), sums.values.copy()
    return copy


def _copy_firsts(firsts: _Firsts) -> _Firsts:
    copy = _Firsts()
    copy.keys, copy.ts = firsts.keys.copy(), firsts.ts.copy()
    copy.rid, copy.arm = firsts.rid.copy(), firsts.arm.copy()
    return copy
