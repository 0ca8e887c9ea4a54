"""The report's row-sized plots as binned counts computed by the database (issue 23).

`dualserve experiment report` draws requests per arm over time and each arm's latency
distribution. Both used to bin every row in Python (`LogFrame`, ~1 GB per million rows);
here the database bins them and returns one count per (arm, bin), so the report's memory
is sized by arms and bins, never by requests. One SQL text runs on SQLite and PostgreSQL;
the dialect (placeholders) comes from `gateway.control.database`.

Two statements a histogram, both over the experiment's rows (index `(experiment, ts)`):

1. the range: `MIN` and `MAX` of the column (one statement for both histograms, with the
   experiment's row count);
2. the counts: each row's bin index, `GROUP BY` arm and bin.

The bins are `np.histogram`'s: equal widths, edge i is `low + i * step` with
`step = (high - low) / bins` (as `np.linspace` computes it, the last edge is `high`); bin i
holds `edges[i] <= x < edges[i + 1]`, the last bin also `x == high` (the maximum is
clamped into it). The database guesses the index by arithmetic (`CAST` truncates on
SQLite and rounds on PostgreSQL, so the guess may be one off) and corrects it by comparing
with the two edges, computed with the same floating-point operations as in numpy, as
`np.histogram` itself does: the counts equal `np.histogram(values, bins=edges)` exactly.
A zero-width range (every value equal) is widened by 0.5 on each side, as `np.histogram`
does; the traffic's time range is at least one second, as the row-level plot had it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.control.database import Database

TRAFFIC_BINS = 30  # requests per arm over time: equal time bins of the served rows
LATENCY_BINS = 40  # latency per arm: bins shared by the arms, between min and max


@dataclass(frozen=True)
class Binned:
    """Counts per arm over shared, equal-width bins (`np.histogram`'s convention).

    Attributes:
        edges: float64, shape (bins + 1,), ascending; bin i holds
            `edges[i] <= x < edges[i + 1]`, the last bin also `x == edges[-1]`. The unit
            is the column's (seconds since the epoch for time, milliseconds for latency).
        counts: per arm (the arms asked, in their order), int64 array of shape (bins,):
            the arm's rows in each bin (zeros for an arm without any).
    """

    edges: np.ndarray
    counts: dict[str, np.ndarray]


@dataclass(frozen=True)
class ReportHistograms:
    """What the report's plots read of one experiment's log.

    Attributes:
        rows: the experiment's rows in the log (served and shadow), as `records` counts.
        traffic: served rows (`kind = 'serve'`, any status) per arm over `TRAFFIC_BINS`
            time bins from the first to the last served row (edges in seconds since the
            epoch); None when the experiment served nothing.
        latency: successful served rows (status 200) per arm over `LATENCY_BINS` latency
            bins between the asked arms' smallest and largest latency (edges in ms); None
            when those arms have no successful served row.
    """

    rows: int
    traffic: Binned | None
    latency: Binned | None


def equal_edges(low: float, high: float, bins: int) -> np.ndarray:
    """`bins + 1` edges from `low` to `high`, computed as `np.linspace` does and as the
    SQL compares them (`low + i * step`, the last one `high`); float64, shape (bins + 1,).

    Raises:
        ValueError: `high <= low` (the callers widen a zero-width range first).
    """
    if not high > low:
        raise ValueError(f"histogram range [{low}, {high}] must have high > low")
    step = (high - low) / bins
    edges = np.arange(bins + 1, dtype=float) * step + low
    edges[-1] = high
    return edges


def latency_range(low: float, high: float) -> tuple[float, float]:
    """The latency bins' range: (low, high), widened by 0.5 ms each side when equal."""
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def traffic_range(first: float, last: float) -> tuple[float, float]:
    """The time bins' range (seconds): at least one second long."""
    return first, max(last, first + 1.0)


class HistogramReader:
    """The report's histograms of one experiment, computed by the database.

    Args:
        db: the log's database.
        experiment: the experiment id.
    """

    def __init__(self, db: Database, experiment: str) -> None:
        self._db, self._p, self._experiment = db, db.placeholder, experiment

    def collect(self, arms: Sequence[str]) -> ReportHistograms:
        """Both histograms for `arms` (see `ReportHistograms`); three statements."""
        rows, first, last, low, high = self._ranges(arms)
        traffic = latency = None
        if first is not None:
            edges = equal_edges(*traffic_range(float(first), float(last)), TRAFFIC_BINS)
            traffic = self._binned("p.ts", "", (), edges, arms)
        if low is not None:
            edges = equal_edges(*latency_range(float(low), float(high)), LATENCY_BINS)
            ok, marks = "AND p.status = 200", self._db.marks(len(arms))
            latency = self._binned(
                "p.latency_ms", f"{ok} AND p.arm IN ({marks})", arms, edges, arms
            )
        return ReportHistograms(int(rows), traffic, latency)

    def _ranges(self, arms: Sequence[str]) -> tuple[Any, ...]:
        """(rows, first served ts, last served ts, min and max latency of the arms'
        successful served rows); None for a range without rows."""
        p = self._p
        ok = f"p.kind = 'serve' AND p.status = 200 AND p.arm IN ({self._db.marks(len(arms))})"
        ok = ok if arms else "1 = 0"
        sql = f"""
            SELECT COUNT(*),
                MIN(CASE WHEN p.kind = 'serve' THEN p.ts END),
                MAX(CASE WHEN p.kind = 'serve' THEN p.ts END),
                MIN(CASE WHEN {ok} THEN p.latency_ms END),
                MAX(CASE WHEN {ok} THEN p.latency_ms END)
            FROM predictions p WHERE p.experiment = {p}"""
        return self._db.fetch(sql, (*arms, *arms, self._experiment))[0]

    def _binned(
        self,
        column: str,
        condition: str,
        params: Sequence[Any],
        edges: np.ndarray,
        arms: Sequence[str],
    ) -> Binned:
        """Served rows (and `condition`) per arm and bin of `column` over `edges`."""
        bins = edges.size - 1
        low, high = float(edges[0]), float(edges[-1])
        step = (high - low) / bins
        counts = {arm: np.zeros(bins, dtype=np.int64) for arm in arms}
        query = _binned_sql(self._p, column, condition, bins)
        values = (low, step, self._experiment, *params, low, high, low, step, low, step)
        for arm, index, count in self._db.fetch(query, values):
            if str(arm) in counts:
                counts[str(arm)][int(index)] = int(count)
        return Binned(edges, counts)


def _binned_sql(p: str, column: str, condition: str, bins: int) -> str:
    """The counts per (arm, bin): the index guessed by arithmetic, clamped into the last
    bin, then moved by one where it is on the wrong side of an edge (see the module
    docstring). Parameters: low, step, experiment, the condition's, low, high, low, step,
    low, step."""
    last = bins - 1
    return f"""
        WITH guess AS (
            SELECT p.arm AS arm, {column} AS x, CAST(({column} - {p}) / {p} AS INTEGER) AS g
            FROM predictions p
            WHERE p.experiment = {p} AND p.kind = 'serve' {condition}
                AND {column} >= {p} AND {column} <= {p}),
        clamped AS (
            SELECT arm, x, CASE WHEN g > {last} THEN {last} ELSE g END AS i FROM guess)
        SELECT arm, CASE WHEN x < {p} + i * {p} THEN i - 1
                WHEN i < {last} AND x >= {p} + (i + 1) * {p} THEN i + 1 ELSE i END AS bin,
            COUNT(*)
        FROM clamped GROUP BY 1, 2"""
