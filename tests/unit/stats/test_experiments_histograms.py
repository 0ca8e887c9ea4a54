"""The report's histograms, binned by the database, equal numpy's binning of the rows.

The truth is `np.histogram` over the rows read back (`store.records`, the row path) with
the same edges, and `np.linspace` for the edges between the rows' min and max. The same
checks run on PostgreSQL in tests/integration/experiments/test_experiments_histograms_pg.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from gateway.control.database import open_sqlite
from gateway.experiments.log.histograms import LATENCY_BINS, TRAFFIC_BINS, equal_edges
from gateway.experiments.log.store import SqlLogStore
from tests.unit.stats.test_experiments_aggregates import CANDIDATE, CONTROL, THIRD, fill

ARMS = [CONTROL, CANDIDATE]


def _served(store: SqlLogStore, arm: str | None = None) -> list[Any]:
    rows = [r for r in store.records("exp") if r[1] == "serve"]
    return [r for r in rows if arm is None or r[5] == arm]


def check_against_numpy(store: SqlLogStore, arms: Sequence[str]) -> None:
    """Both histograms of `arms` equal numpy's over the rows, edges and counts."""
    got = store.histograms("exp", arms)
    assert got.rows == len(store.records("exp"))
    assert got.traffic is not None and got.latency is not None
    times = [r[2] for r in _served(store)]
    assert np.array_equal(got.traffic.edges, np.linspace(min(times), max(times), 31))
    ok = [r[8] for r in _served(store) if r[5] in arms and r[9] == 200]
    assert np.array_equal(got.latency.edges, np.linspace(min(ok), max(ok), 41))
    for arm in arms:
        ts = [r[2] for r in _served(store, arm)]
        latency = [r[8] for r in _served(store, arm) if r[9] == 200]
        want_traffic = np.histogram(ts, bins=got.traffic.edges)[0]
        want_latency = np.histogram(latency, bins=got.latency.edges)[0]
        assert np.array_equal(got.traffic.counts[arm], want_traffic), arm
        assert np.array_equal(got.latency.counts[arm], want_latency), arm
        assert got.traffic.counts[arm].dtype == np.int64
        assert got.latency.counts[arm].sum() == len(latency) > 0


def edge_values(store: SqlLogStore) -> None:
    """Latencies 0, 1, ..., 40 ms and served times 0, 1, ..., 30 s: every value on an
    edge (bin i holds i; the maximum is clamped into the last bin), as np.histogram."""
    rows = [
        ("e" + str(i), "serve", float(min(i, 30)), "exp", "m", CONTROL, 1, None,
         float(i), 200, 0, None, None, 0, CONTROL)
        for i in range(41)
    ]  # fmt: skip
    store.write_batch(rows)


def check_edge_values(store: SqlLogStore) -> None:
    got = store.histograms("exp", [CONTROL])
    assert got.latency is not None and got.traffic is not None
    assert np.array_equal(got.latency.edges, np.arange(41.0))
    assert got.latency.counts[CONTROL].tolist() == [1] * 39 + [2]
    assert np.array_equal(
        got.latency.counts[CONTROL], np.histogram(np.arange(41.0), bins=np.arange(41.0))[0]
    )
    assert got.traffic.counts[CONTROL].tolist() == [1] * 29 + [12]  # 29 and 30 (x11)


def equal_latencies(store: SqlLogStore) -> None:
    """One served row a second for 10 s, every latency 7.25 ms."""
    rows = [
        (f"q{i}", "serve", 100.0 + i, "exp", "m", CONTROL, 1, None, 7.25, 200, 0, None,
         None, 0, CONTROL)
        for i in range(10)
    ]  # fmt: skip
    store.write_batch(rows)


def check_equal_latencies(store: SqlLogStore) -> None:
    """A zero-width range is widened by 0.5 ms each side, as np.histogram widens it."""
    got = store.histograms("exp", [CONTROL, CANDIDATE])
    assert got.latency is not None
    counts, edges = np.histogram(np.full(10, 7.25), bins=LATENCY_BINS)
    assert np.array_equal(got.latency.edges, edges)
    assert np.array_equal(got.latency.counts[CONTROL], counts)
    assert got.latency.counts[CANDIDATE].tolist() == [0] * LATENCY_BINS  # no rows: zeros


@pytest.mark.parametrize(
    ("seed", "units", "kwargs"),
    [(0, 300, {}), (1, 40, {"keyless": 0.5}), (2, 600, {"third_arm": True})],
)
def test_histograms_equal_numpys_over_the_rows(seed: int, units: int, kwargs: Any) -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, seed, units, **kwargs)
    check_against_numpy(store, ARMS)


def test_an_arm_outside_the_asked_ones_widens_neither_range_nor_counts() -> None:
    store = SqlLogStore(open_sqlite(None))
    fill(store, 2, 600, third_arm=True)
    got = store.histograms("exp", ARMS)
    assert got.latency is not None and set(got.latency.counts) == set(ARMS)
    check_against_numpy(store, [*ARMS, THIRD])  # the third arm's own range, when asked


def test_values_on_the_edges_fall_as_numpy_puts_them() -> None:
    store = SqlLogStore(open_sqlite(None))
    edge_values(store)
    check_edge_values(store)


def test_equal_latencies_and_one_second_of_traffic_do_not_divide_by_zero() -> None:
    store = SqlLogStore(open_sqlite(None))
    equal_latencies(store)
    check_equal_latencies(store)
    one = SqlLogStore(open_sqlite(None))
    one.write_batch([("x", "serve", 5.0, "exp", "m", CONTROL, 1, None, 3.0, 200, 0, None,
                      None, 0, CONTROL)])  # fmt: skip
    got = one.histograms("exp", [CONTROL])
    assert got.traffic is not None and got.traffic.edges[-1] - got.traffic.edges[0] == 1.0
    assert got.traffic.counts[CONTROL].tolist() == [1] + [0] * (TRAFFIC_BINS - 1)


def test_an_experiment_without_rows_has_no_histograms() -> None:
    store = SqlLogStore(open_sqlite(None))
    got = store.histograms("exp", ARMS)
    assert (got.rows, got.traffic, got.latency) == (0, None, None)
    assert store.histograms("exp", []).rows == 0


def test_only_failed_requests_give_traffic_and_no_latency() -> None:
    store = SqlLogStore(open_sqlite(None))
    store.write_batch([("f", "serve", 5.0, "exp", "m", CONTROL, 1, None, 3.0, 503, None, None,
                        None, 0, CONTROL)])  # fmt: skip
    got = store.histograms("exp", [CONTROL])
    assert got.latency is None and got.traffic is not None
    assert got.traffic.counts[CONTROL].sum() == 1


def test_equal_edges_refuse_an_empty_range() -> None:
    with pytest.raises(ValueError, match="high > low"):
        equal_edges(1.0, 1.0, 4)
