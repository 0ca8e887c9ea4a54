"""The prediction log while its store is down: rows wait in the bounded buffer and are
written when it returns, what does not fit is dropped and counted, nothing goes
unaccounted; its health on `/metrics`; pending feedback joins its row; labels in range."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.control.database import StoreUnavailable
from gateway.experiments.log.labels import LabelOutOfRange, check_label_range
from gateway.experiments.log.records import PredictionRecord, Row
from gateway.experiments.log.sink import LogCounters, LogHealth, PredictionLog
from gateway.experiments.log.store import SqliteLogStore
from gateway.experiments.log.top1 import to_row
from gateway.routing.policy_store import source_label
from gateway.telemetry.metrics import GatewayMetrics


class DownStore(SqliteLogStore):
    """An in-memory store that refuses writes (the database is down) while `down`."""

    def __init__(self) -> None:
        super().__init__(None)
        self.down = True
        self.refused = 0

    def write_batch(self, rows: Sequence[Row]) -> None:
        if self.down:
            self.refused += 1
            raise StoreUnavailable("PostgreSQL at test:5432 is unavailable: connection refused")
        super().write_batch(rows)


def _outcome(i: int) -> PredictionRecord:
    outputs = {"probabilities": np.array([[0.1, 0.7, 0.2]], dtype=np.float32)}
    return PredictionRecord(
        request_id=f"r{i}", kind="serve", ts=100.0 + i, experiment=None, model="toy",
        arm="pytorch", version=1, routing_key=None, latency_s=0.001, status=200,
        outputs=outputs,
    )  # fmt: skip


async def _until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)  # the poll's pace, not a synchronisation


def _accounted(log: PredictionLog) -> int:
    health = log.health()
    c = health.counters
    return c.written + c.write_errors + c.dropped + health.waiting


def test_rows_wait_while_the_store_is_down_and_are_written_when_it_returns() -> None:
    store = DownStore()

    async def run() -> tuple[PredictionLog, list[str], LogHealth]:
        log = PredictionLog(lambda: store, queue_size=100, batch_size=10, linger_s=0.001)
        await log.start()
        for i in range(30):
            log.submit(_outcome(i))
        await _until(lambda: store.refused >= 2)  # tried, refused, tried again (backoff)
        assert not await log.flush(0.05)  # bounded: the store is down
        down = log.health()
        store.down = False
        assert await log.flush(10)
        ids = [row[0] for row in await log.run(lambda s: s.records(None))]
        await log.aclose()
        return log, ids, down

    log, ids, down = asyncio.run(run())
    assert not down.store_up and down.waiting == 30 and down.counters.written == 0
    assert sorted(ids) == sorted(f"r{i}" for i in range(30))
    assert log.counters == LogCounters(submitted=30, written=30, dropped=0, write_errors=0)
    assert log.health().store_up


def test_a_full_buffer_while_the_store_is_down_drops_and_counts_every_record() -> None:
    store = DownStore()

    async def run() -> tuple[PredictionLog, int]:
        log = PredictionLog(lambda: store, queue_size=8, batch_size=4, linger_s=0.001)
        await log.start()
        offered = 0
        for i in range(40):  # far more than the buffer holds
            log.submit(_outcome(i))
            offered += 1
            if i % 8 == 0:
                await asyncio.sleep(0)  # let the writer take (and be refused) a batch
        assert offered == log.counters.submitted + log.counters.dropped  # none unaccounted
        assert _accounted(log) == offered and log.health().waiting <= 2 * 8  # buffer + in flight
        store.down = False
        await log.aclose()
        return log, offered

    log, offered = asyncio.run(run())
    c = log.counters
    assert (
        c.dropped > 0 and c.written <= 2 * 8 and c.written + c.dropped + c.write_errors == offered
    )


def test_records_still_unwritten_at_close_are_counted_as_write_errors() -> None:
    store = DownStore()

    async def run() -> PredictionLog:
        log = PredictionLog(lambda: store, queue_size=100, batch_size=10, linger_s=0.001)
        await log.start()
        for i in range(5):
            log.submit(_outcome(i))
        await log.aclose(timeout=0.2)  # the store never returns
        return log

    log = asyncio.run(run())
    assert log.counters.write_errors == 5 and _accounted(log) == 5


def test_log_health_is_on_metrics_per_worker_and_summed() -> None:
    metrics = GatewayMetrics()
    counters = LogCounters(submitted=10, written=6, dropped=3, write_errors=1)
    metrics.log_health.update(LogHealth(counters, 2, False), worker="7")
    counters.written += 2  # the log's plain integers move on; the next update adds the rest
    metrics.log_health.update(LogHealth(counters, 0, True), worker="7")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    total = "dualserve_prediction_log_records_total"
    assert samples[(total, (("fate", "written"),))] == 8
    assert samples[(total, (("fate", "dropped"),))] == 3
    worker = "dualserve_prediction_log_worker_records_total"
    assert samples[(worker, (("fate", "write_errors"), ("worker", "7")))] == 1
    assert samples[("dualserve_prediction_log_store_up", (("worker", "7"),))] == 1
    assert samples[("dualserve_prediction_log_waiting_records", ())] == 0
    assert samples[("dualserve_prediction_log_stores_down", ())] == 0


def test_a_label_for_a_row_not_yet_logged_is_pending_and_joins_it_when_it_lands(
    tmp_path: Path,
) -> None:
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    results = store.add_feedback([("r1", 1)], ts=0.0, classes={"toy": 3})
    assert [(r.outcome, r.status) for r in results] == [("pending", 202)]
    again = store.add_feedback([("r1", 2)], ts=0.0)
    assert [r.outcome for r in again] == ["conflict"]  # the first label holds
    store.write_batch([to_row(_outcome(1))])  # another worker's log writes the row
    (record,) = store.records(None)
    assert record[0] == "r1" and record[-1] == 1  # the label column, joined
    assert store.purge(before_ts=-1.0) == 0 and store.records(None)[0][-1] == 1


def test_labels_outside_the_models_classes_are_refused_naming_the_range(
    tmp_path: Path,
) -> None:
    with pytest.raises(LabelOutOfRange, match=r"feedback\[1\]\.label: 10 .* 0\.\.9"):
        check_label_range([("a", 9), ("b", 10)], 10)
    store = SqliteLogStore(tmp_path / "log.sqlite3")
    store.write_batch([to_row(_outcome(1))])
    with pytest.raises(LabelOutOfRange, match=r"classes of model toy, 0\.\.2"):
        store.add_feedback([("r1", 3)], ts=0.0, classes={"toy": 3})
    assert store.records(None)[0][-1] is None  # nothing stored


def test_the_configured_layer_names_its_file_not_its_path() -> None:
    assert source_label("/srv/secret/dir/gateway.yaml") == "gateway config (gateway.yaml)"
    assert source_label("gateway settings") == "gateway settings"
