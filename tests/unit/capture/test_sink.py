"""The capture's hand-off: the observer keeps only sampled final calls, the queue is
bounded (full = dropped and counted, never waiting), the writer thread writes it all."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from gateway.capture.files import CaptureFiles
from gateway.capture.sink import CaptureSink
from gateway.core.outcome import CallOutcome
from gateway.core.types import InferRequest, InferResponse
from gateway.telemetry.metrics import GatewayMetrics


def outcome(
    i: int, model: str = "digits-mlp", final: bool = True, **request: object
) -> CallOutcome:
    x = np.full((1, 64), i, dtype=np.float32)
    req = InferRequest(model, {"input": x}, request_id=f"r{i}", routing_key=f"user-{i}")
    for name, value in request.items():
        setattr(req, name, value)
    probs = np.eye(10, dtype=np.float32)[[i % 10]]
    response = InferResponse(model, 1, "pytorch", {"probabilities": probs})
    return CallOutcome(
        kind="primary", request=req, arm="pytorch", layer="configured", final=final,
        latency_s=0.001, elapsed_s=0.002, status=200, error=None, response=response, breaker=0,
    )  # fmt: skip


def sink(tmp_path: Path, share: float = 1.0, queue_size: int = 100, **kw: int) -> CaptureSink:
    def files() -> CaptureFiles:
        return CaptureFiles(tmp_path, 1 << 30, 3600.0, 1e9, None)

    max_bytes = kw.get("max_request_bytes", 1 << 20)
    return CaptureSink(files, {"digits-mlp": share}, queue_size, max_bytes, 0.05)


def test_only_sampled_final_calls_of_captured_models_are_kept(tmp_path: Path) -> None:
    capture = sink(tmp_path)
    capture.observe(outcome(1))
    capture.observe(outcome(2, final=False))  # a failed primary a failover followed
    capture.observe(outcome(3, model="digits-cnn"))  # no share
    capture.observe(outcome(4, request_id="replay-tensorflow-r4"))  # a replay's own request
    assert capture.counters.submitted == 1 and capture.waiting == 1
    none = sink(tmp_path, share=0.0)
    none.observe(outcome(5))
    assert none.counters.submitted == 0


def test_a_request_past_the_size_cap_is_counted_not_captured(tmp_path: Path) -> None:
    capture = sink(tmp_path, max_request_bytes=255)  # one example is 256 bytes
    capture.observe(outcome(1))
    assert capture.counters.too_large == 1 and capture.counters.submitted == 0


def test_a_full_queue_drops_and_counts_and_never_waits(tmp_path: Path) -> None:
    capture = sink(tmp_path, queue_size=10)  # not started: nothing drains the queue
    results = [_submit(capture, i) for i in range(25)]
    assert results == [True] * 10 + [False] * 15
    assert capture.counters.submitted == 10 and capture.counters.dropped == 15
    assert capture.waiting == 10


def test_a_stalled_writer_never_blocks_the_observer(tmp_path: Path) -> None:
    gate = threading.Event()
    capture = sink(tmp_path, queue_size=5)
    capture.start()
    try:
        original = capture._files.write  # type: ignore[union-attr]

        def stalled(records):  # type: ignore[no-untyped-def]
            gate.wait(10)
            return original(records)

        capture._files.write = stalled  # type: ignore[union-attr,method-assign]
        capture.observe(outcome(0))
        capture.flush(timeout_s=0.01, close_files=False)  # the writer takes it and stalls
        for i in range(1, 40):  # returns at once, whatever the writer does
            capture.observe(outcome(i))
        assert capture.counters.submitted + capture.counters.dropped == 40
        assert capture.counters.dropped >= 40 - 1 - 5 and capture.waiting <= 5
    finally:
        gate.set()
        capture.close()
    c = capture.counters
    assert c.written == c.submitted and c.written + c.dropped == 40


def test_flush_writes_everything_and_metrics_count_it(tmp_path: Path) -> None:
    capture = sink(tmp_path)
    metrics = GatewayMetrics()
    metrics.before_render(capture.metrics_updater(metrics.registry))
    capture.start()
    for i in range(30):
        capture.observe(outcome(i))
    assert capture.flush(timeout_s=10)
    frame = pd.concat(pd.read_parquet(p) for p in tmp_path.glob("*/*.parquet"))
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(30))
    assert set(frame["arm"]) == {"pytorch"} and set(frame["version"]) == {1}
    text = metrics.render().decode()
    assert 'dualserve_capture_records_total{fate="written"} 30.0' in text
    assert 'dualserve_capture_records_total{fate="submitted"} 30.0' in text
    capture.close()


def _submit(capture: CaptureSink, i: int) -> bool:
    before = capture.counters.submitted
    capture.observe(outcome(i))
    return capture.counters.submitted > before


def test_the_queue_is_bounded_by_bytes_too(tmp_path: Path) -> None:
    def files() -> CaptureFiles:
        return CaptureFiles(tmp_path, 1 << 30, 3600.0, 1e9, None)

    capture = CaptureSink(files, {"digits-mlp": 1.0}, 100, 1 << 20, 0.05, None, 1000)
    results = [_submit(capture, i) for i in range(6)]  # 256 input bytes each
    assert results == [True] * 3 + [False] * 3
    assert capture.counters.dropped == 3
    capture.start()
    assert capture.flush(timeout_s=10)  # the writer took them: room again
    assert _submit(capture, 7)
    capture.close()
    assert capture.counters.written == 4
