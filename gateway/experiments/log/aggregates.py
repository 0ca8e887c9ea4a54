"""An experiment's sufficient statistics, computed by the database (issue 23).

The analysis never loads the log's rows: the database groups them by unit (the routing
key; a request without one is its own unit, `'request:' || request_id`, as `LogFrame`)
and by arm, and returns sums whose size is the number of arms and looks, or of units at
most, never of requests. One SQL text runs on SQLite (>= 3.25, window functions) and
PostgreSQL; the dialect (placeholders) comes from `gateway.control.database`.

What comes back (`ExperimentAggregates`), every arm named by its `arm` column (any number
of arms, any names):

- per arm and per look (the history's cuts, then every row): the per-unit sums behind the
  delta-method ratios (`RatioSums`): errors over requests, correct over labelled answers;
- the cuts themselves: the history's looks at equal steps in units seen, from each unit's
  first served timestamp (read as one float per unit, streamed);
- per arm, the shadow calls' agreement counts;
- per arm, the units first served by that arm, per segment of the split's timeline (the
  sample-ratio check);
- the mirrored pairs' counts, McNemar cells, per-unit latency-difference sums and median;
- per arm, the successful requests' latencies, ts and unit of a bounded, deterministic
  sample of whole units (`latency_sample`).

Percentiles, the one figure sums cannot give: a sample of whole units chosen in SQL by
their hashed key (`substr(unit hash, 1, 8) < threshold`, hex strings compare as their
numbers; PostgreSQL compares them `COLLATE "C"`, byte by byte, as SQLite does, whatever
the database's collation: so do request ids where rows are ordered, `Database.byte_order`),
sized so that about `SAMPLE_ROWS` successful requests per arm come back. Why
this and not per-arm histograms kept by the writer: the interval around a percentile is a
cluster bootstrap over units (`clustered.quantiles`), which needs each request's unit, and
a histogram forgets it; the hashed sample keeps whole units (so the bootstrap stays
honest), is the same on every read (deterministic, no state, no writer change), and an
arm with at most `SAMPLE_ROWS` successful requests is read whole, so its figures are
exactly the row-level path's. Above that, the percentile is the sample's, and its
bootstrap interval is the sample's too (wider than all rows would give, never too narrow).
Units without a routing key are sampled by their request id's first characters (uniform
for the gateway's hex request ids; a client's own ids may be less so).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.control.database import Database

SAMPLE_ROWS = 50_000  # successful requests per arm read for its percentiles, about
LOOKS = 10  # the history's looks
UNIT = "COALESCE(p.key_hash, 'request:' || p.request_id)"
SAMPLE_KEY = "substr(COALESCE(p.key_hash, p.request_id), 1, 8)"
HEX_SPAN = 16**8
_FETCH = 10_000  # rows per fetchmany when streaming


@dataclass(frozen=True)
class RatioSums:
    """sum(x)/sum(y) over units as running sums (`clustered.ratio_se_from_sums`' input).

    Attributes:
        k: units with y > 0; sx, sy: sums of the per-unit x and y; sxx, syy, sxy: sums
        of their squares and products (all exact integers for counts).
    """

    k: int
    sx: float
    sy: float
    sxx: float
    syy: float
    sxy: float


@dataclass(frozen=True)
class ArmLook:
    """One arm's sums at one look: errors / requests and correct / labelled per unit."""

    errors: RatioSums
    accuracy: RatioSums


@dataclass(frozen=True)
class LatencySample:
    """One arm's successful requests of the sampled units, oldest first (the row path's
    order: ts, request id).

    Attributes:
        unit: object array of unit keys; ts: seconds; latency_ms: float64.
        fraction: the share of the hash space sampled (1.0: every unit).
    """

    unit: np.ndarray
    ts: np.ndarray
    latency_ms: np.ndarray
    fraction: float


@dataclass(frozen=True)
class PairedSums:
    """The mirrored pairs (served row and shadow row of one request, both 200)."""

    pairs: int
    disagreements: int
    labelled: int
    control_only: int
    candidate_only: int
    latency: RatioSums  # x = candidate - control latency (ms), y = pairs, per unit
    median_diff_ms: float


@dataclass(frozen=True)
class ExperimentAggregates:
    """Everything the analysis reads of one experiment's log (see the module docstring).

    Attributes:
        arms: the arms analysed, in the order asked (or the served arms, sorted).
        served_arms: every arm that served a row, sorted.
        cuts: the history's look times (seconds), ascending; `units_at` the units first
            seen by each.
        looks: per arm, one `ArmLook` per cut, then one for every row.
        shadow: per arm, (compared, agreed) of its shadow calls.
        first_served: per arm, units first served by it, per split segment (the
            segment starts given by the caller; units before the first count in it).
        latency: per arm, its `LatencySample`.
        paired: per candidate (arms[1:]), the mirrored pairs of arms[0] (the control) and it
            (None: no pair, or not read).
        upto: the database time of the rows read up to (an incremental look), or None.
    """

    arms: list[str]
    served_arms: list[str]
    cuts: np.ndarray
    units_at: list[int]
    looks: dict[str, list[ArmLook]]
    shadow: dict[str, tuple[int, int]]
    first_served: dict[str, list[int]]
    latency: dict[str, LatencySample]
    paired: dict[str, PairedSums | None]
    upto: float | None = None  # an incremental look's: rows logged up to (`log.increments`)


class Aggregator:
    """The queries of one experiment (rows at or after `since` when given).

    Args:
        db: the log's database.
        experiment: the experiment id.
        since: seconds since the epoch, or None for every row.
    """

    def __init__(self, db: Database, experiment: str, since: float | None = None) -> None:
        self._db, self._p = db, db.placeholder
        where = f"p.experiment = {self._p}"
        self._params: tuple[Any, ...] = (experiment,)
        if since is not None:
            where, self._params = where + f" AND p.ts >= {self._p}", (experiment, since)
        self._where = where

    def collect(
        self, arms: Sequence[str] | None, segment_starts: Sequence[float] = (), looks: int = LOOKS
    ) -> ExperimentAggregates:
        """Every aggregate; `arms` None = the served arms (sorted); `looks` 0: no history
        (no cuts: the per-unit first-seen pass is skipped, the sums are of every row)."""
        served = self.served_arms()
        chosen = list(arms) if arms is not None else served
        cuts, units_at = self.cuts(looks) if looks > 0 else (np.array([]), [])
        paired = {arm: self.paired(chosen[0], arm) for arm in chosen[1:]}
        sums = self.looks(chosen, [*cuts.tolist()])
        ok = {arm: int(sums[arm][-1].errors.sy - sums[arm][-1].errors.sx) for arm in chosen}
        return ExperimentAggregates(
            arms=chosen,
            served_arms=served,
            cuts=cuts,
            units_at=units_at,
            looks=sums,
            shadow=self.shadow(chosen),
            first_served=self.first_served(chosen, segment_starts),
            latency={arm: self.latency_sample(arm, successful=ok[arm]) for arm in chosen},
            paired=paired,
        )

    def served_arms(self) -> list[str]:
        sql = f"SELECT DISTINCT p.arm FROM predictions p WHERE {self._where} AND p.kind = 'serve'"
        return sorted(str(row[0]) for row in self._db.fetch(sql, self._params))

    def cuts(self, looks: int) -> tuple[np.ndarray, list[int]]:
        """The history's look times: each unit's first served ts (any arm), at `looks`
        equal steps of units (`np.quantile(..., method="higher")`), and units seen by each."""
        sql = (
            f"SELECT MIN(p.ts) FROM predictions p WHERE {self._where} AND p.kind = 'serve'"
            f" GROUP BY {UNIT}"
        )
        first_seen = np.fromiter((row[0] for row in self._stream(sql, self._params)), float)
        if first_seen.size == 0:
            return np.array([]), []
        steps = np.linspace(0, 1, looks + 1)[1:]
        cuts = np.unique(np.quantile(first_seen, steps, method="higher"))
        return cuts, [int((first_seen <= ts).sum()) for ts in cuts]

    def looks(self, arms: Sequence[str], cuts: Sequence[float]) -> dict[str, list[ArmLook]]:
        """Per arm, the per-unit ratio sums of the rows at or before each cut, then of all.

        One pass: the database groups rows by (arm, unit, bucket between two cuts), runs
        each unit's cumulative sums over its buckets (a window), and sums per (arm,
        bucket) the change each bucket brings to the unit's running figures (for a
        square: C^2 - (C - x)^2); a look's sums are the running total of those changes
        over the buckets up to it. Integers throughout: exact on both databases.
        """
        buckets = len(cuts) + 1
        totals = {arm: np.zeros((buckets, 12)) for arm in arms}
        if arms:
            for arm, bucket, *sums in self._db.fetch(self._looks_sql(len(cuts), len(arms)),
                                                     (*cuts, *self._params, *arms)):  # fmt: skip
                totals[str(arm)][int(bucket)] = [_number(v) for v in sums]
        out = {}
        for arm, changes in totals.items():
            running = np.cumsum(changes, axis=0)
            out[arm] = [
                ArmLook(RatioSums(int(n[0]), *n[1:6]), RatioSums(int(n[6]), *n[7:12]))
                for n in running.tolist()
            ]
        return out

    def _looks_sql(self, cuts: int, arms: int) -> str:
        p = self._p
        bucket = " ".join(f"WHEN p.ts <= {p} THEN {i}" for i in range(cuts))
        bucket = f"CASE {bucket} ELSE {cuts} END" if cuts else "0"

        def square(total: str, part: str) -> str:  # the change of total^2 this bucket made
            return f"SUM({total} * {total} - ({total} - {part}) * ({total} - {part}))"

        def product(t1: str, p1: str, t2: str, p2: str) -> str:
            return f"SUM({t1} * {t2} - ({t1} - {p1}) * ({t2} - {p2}))"

        return f"""
            WITH g AS (
                SELECT p.arm AS arm, {UNIT} AS unit, {bucket} AS bucket, COUNT(*) AS n,
                    SUM(CASE WHEN p.status <> 200 THEN 1 ELSE 0 END) AS e,
                    SUM(CASE WHEN p.status = 200 AND f.label IS NOT NULL
                        AND p.top1 IS NOT NULL THEN 1 ELSE 0 END) AS m,
                    SUM(CASE WHEN p.status = 200 AND f.label = p.top1 THEN 1 ELSE 0 END) AS c
                FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id
                WHERE {self._where} AND p.kind = 'serve' AND p.arm IN ({self._db.marks(arms)})
                GROUP BY 1, 2, 3),
            w AS (
                SELECT arm, bucket, n, e, m, c, SUM(n) OVER u AS cn, SUM(e) OVER u AS ce,
                    SUM(m) OVER u AS cm, SUM(c) OVER u AS cc
                FROM g WINDOW u AS (PARTITION BY arm, unit ORDER BY bucket
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
            SELECT arm, bucket, SUM(CASE WHEN cn = n THEN 1 ELSE 0 END), SUM(e), SUM(n),
                {square("ce", "e")}, {square("cn", "n")}, {product("ce", "e", "cn", "n")},
                SUM(CASE WHEN m > 0 AND cm = m THEN 1 ELSE 0 END), SUM(c), SUM(m),
                {square("cc", "c")}, {square("cm", "m")}, {product("cc", "c", "cm", "m")}
            FROM w GROUP BY arm, bucket"""

    def shadow(self, arms: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per arm: (shadow calls compared, of which agreed)."""
        sql = (
            "SELECT p.arm, COUNT(*), SUM(p.agreed) FROM predictions p"
            f" WHERE {self._where} AND p.kind = 'shadow' AND p.agreed IS NOT NULL GROUP BY p.arm"
        )
        found = {str(a): (int(n), int(s or 0)) for a, n, s in self._db.fetch(sql, self._params)}
        return {arm: found.get(arm, (0, 0)) for arm in arms}

    def first_served(
        self, arms: Sequence[str], segment_starts: Sequence[float]
    ) -> dict[str, list[int]]:
        """Per arm, the units whose first served row (among `arms`; ties by request id,
        as the row path's order) it was, per segment of `segment_starts` (ascending; a
        unit first seen at ts is in the last segment starting at or before ts, or the
        first)."""
        out = {arm: [0] * max(1, len(segment_starts)) for arm in arms}
        if not arms:
            return out
        p = self._p
        starts = list(segment_starts)
        segment = " ".join(f"WHEN ts >= {p} THEN {i}" for i in reversed(range(1, len(starts))))
        segment = f"CASE {segment} ELSE 0 END" if len(starts) > 1 else "0"
        sql = f"""
            SELECT arm, {segment} AS segment, COUNT(*) FROM (
                SELECT p.arm AS arm, p.ts AS ts, ROW_NUMBER() OVER (
                    PARTITION BY {UNIT} ORDER BY p.ts, p.request_id{self._db.byte_order}) AS rn
                FROM predictions p
                WHERE {self._where} AND p.kind = 'serve' AND p.arm IN ({self._db.marks(len(arms))})
            ) firsts WHERE rn = 1 GROUP BY 1, 2"""
        later = list(reversed(starts[1:]))
        params = (*later, *self._params, *arms)
        for arm, index, count in self._db.fetch(sql, params):
            out[str(arm)][int(index)] = int(count)
        return out

    def latency_sample(
        self, arm: str, rows: int = SAMPLE_ROWS, successful: int | None = None
    ) -> LatencySample:
        """The arm's successful requests of whole units whose hash is below a threshold
        sized for about `rows` requests (every unit when the arm has no more);
        `successful`: the arm's successful requests when known (else counted here)."""
        base = f"{self._where} AND p.kind = 'serve' AND p.status = 200 AND p.arm = {self._p}"
        params = (*self._params, arm)
        total = successful
        if total is None:
            count = f"SELECT COUNT(*) FROM predictions p WHERE {base}"
            total = int(self._db.fetch(count, params)[0][0])
        fraction = sample_fraction(total, rows)
        if (threshold := sample_threshold(fraction)) is not None:
            base += f" AND {SAMPLE_KEY}{self._db.byte_order} < {self._p}"
            params = (*params, threshold)
        sql = (
            f"SELECT {UNIT}, p.ts, p.latency_ms FROM predictions p WHERE {base}"
            f" ORDER BY p.ts, p.request_id{self._db.byte_order}"
        )
        units, ts, latency = [], [], []
        for unit, when, value in self._stream(sql, params):
            units.append(unit)
            ts.append(when)
            latency.append(value)
        return LatencySample(
            np.array(units, dtype=object),
            np.array(ts, dtype=float),
            np.array(latency, dtype=float),
            fraction,
        )

    def paired(self, control: str, candidate: str) -> PairedSums | None:
        """The pairs of a served row and a shadow row of one request, one arm each of
        `control` and `candidate`, both successful; None without any. One statement: the
        pairs (a self-join) are built once (`MATERIALIZED`: SQLite >= 3.35, PostgreSQL
        >= 12), then counted, summed per unit, and their median difference taken (the
        two middle values: the same element when the count is odd)."""
        p = self._p
        shadow_where = self._where.replace("p.", "h.")
        sql = f"""
            WITH pairs AS MATERIALIZED (
                SELECT {UNIT} AS unit, f.label AS label,
                    CASE WHEN p.arm = {p} THEN p.top1 ELSE h.top1 END AS a_top1,
                    CASE WHEN p.arm = {p} THEN h.top1 ELSE p.top1 END AS b_top1,
                    CASE WHEN p.arm = {p} THEN h.latency_ms - p.latency_ms
                        ELSE p.latency_ms - h.latency_ms END AS diff
                FROM predictions p
                JOIN predictions h ON h.request_id = p.request_id AND h.kind = 'shadow'
                LEFT JOIN feedback f ON f.request_id = p.request_id
                WHERE {self._where} AND {shadow_where} AND p.kind = 'serve'
                    AND p.status = 200 AND h.status = 200
                    AND ((p.arm = {p} AND h.arm = {p}) OR (p.arm = {p} AND h.arm = {p}))),
            counts AS (
                SELECT COUNT(*) AS pairs,
                    SUM(CASE WHEN a_top1 IS NOT NULL AND b_top1 IS NOT NULL
                        AND a_top1 <> b_top1 THEN 1 ELSE 0 END) AS disagreements,
                    SUM(CASE WHEN label IS NOT NULL THEN 1 ELSE 0 END) AS labelled,
                    SUM(CASE WHEN label IS NOT NULL AND a_top1 = label
                        AND NOT (b_top1 IS NOT NULL AND b_top1 = label) THEN 1 ELSE 0 END)
                        AS control_only,
                    SUM(CASE WHEN label IS NOT NULL AND b_top1 = label
                        AND NOT (a_top1 IS NOT NULL AND a_top1 = label) THEN 1 ELSE 0 END)
                        AS candidate_only
                FROM pairs),
            units AS (SELECT unit, SUM(diff) AS d, COUNT(*) AS n FROM pairs GROUP BY unit),
            sums AS (
                SELECT COUNT(*) AS k, SUM(d) AS sx, SUM(n) AS sy, SUM(d * d) AS sxx,
                    SUM(n * n) AS syy, SUM(d * n) AS sxy FROM units)
            SELECT counts.*, sums.*,
                (SELECT diff FROM pairs ORDER BY diff LIMIT 1
                    OFFSET (SELECT (COUNT(*) - 1) / 2 FROM pairs)),
                (SELECT diff FROM pairs ORDER BY diff LIMIT 1
                    OFFSET (SELECT COUNT(*) / 2 FROM pairs))
            FROM counts, sums"""
        params = (
            control, control, control, *self._params, *self._params,
            control, candidate, candidate, control,
        )  # fmt: skip
        row = self._db.fetch(sql, params)[0]
        total = int(row[0])
        if total == 0:
            return None
        c = [int(v or 0) for v in row[1:5]]
        latency = RatioSums(int(row[5]), *(_number(v) for v in row[6:11]))
        median = float(np.mean([_number(row[11]), _number(row[12])]))
        return PairedSums(total, c[0], c[1], c[2], c[3], latency, median)

    def _stream(self, sql: str, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        for batch in stream_batches(self._db, sql, params):
            yield from batch


def stream_batches(
    db: Database, sql: str, params: tuple[Any, ...]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `sql` in batches of `_FETCH` (never all in memory at once)."""
    with db.transaction() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(_FETCH):
            yield batch


def sample_fraction(successful: int, rows: int = SAMPLE_ROWS) -> float:
    """The share of the hash space an arm's latency sample reads: about `rows` of its
    `successful` requests (1.0: every unit)."""
    return 1.0 if successful <= rows else rows / successful


def sample_threshold(fraction: float) -> str | None:
    """The sample key's bound for `fraction` (8 hex digits), None when every unit is read."""
    return None if fraction >= 1.0 else f"{int(fraction * HEX_SPAN):08x}"


def _number(value: Any) -> float:
    """A SQL sum as a float (PostgreSQL's SUM of integers is a Decimal; None is 0)."""
    return 0.0 if value is None else float(value)
