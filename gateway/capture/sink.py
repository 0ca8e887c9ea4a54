"""The capture's hand-off: an outcome observer that never waits, a bounded queue, and a
writer thread that owns the files.

`observe` (subscribed in `gateway.app.build_context`, beside the prediction log's) looks
at the final call of each request (the answer the client got, `CallOutcome.final`): a
model with a share, a request the sampler keeps (`sampler.keep`), inputs no larger than
`max_request_bytes`, then `submit` appends one `CaptureRecord` of references to a deque.
A full deque drops the record and counts it; the request never waits. The writer thread
wakes every `flush_interval_s` (sooner on `flush`), takes what waits, converts it to
Arrow and appends it to the model's Parquet file (`files.CaptureFiles`): the conversion
and compression run off the event loop (pyarrow releases the GIL while it compresses
and writes).

Requests whose id starts with `replay-` (what `dualserve replay` sends) are not captured
again.

Counters (`CaptureCounters`, on `/metrics` as `dualserve_capture_records_total{fate}`):
`submitted` (taken into the queue), `dropped` (queue full), `too_large`, `written`,
`write_errors`. Every submitted record ends written, counted as a write error, or still
waiting.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.capture.files import CaptureFiles
from gateway.capture.records import CaptureRecord
from gateway.capture.sampler import keep
from gateway.core.outcome import CallOutcome

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from gateway.capture.cloudevents import CloudEventsSink

logger = logging.getLogger(__name__)
REPLAY_PREFIX = "replay-"
_FATES = (
    "submitted", "dropped", "too_large", "written", "write_errors", "cloudevents_sent",
    "cloudevents_failed",
)  # fmt: skip


@dataclass
class CaptureCounters:
    """Records by fate since the start (this process's)."""

    submitted: int = 0
    dropped: int = 0
    too_large: int = 0
    written: int = 0
    write_errors: int = 0
    cloudevents_sent: int = 0
    cloudevents_failed: int = 0


class CaptureSink:
    """Bounded queue + one writer thread over `CaptureFiles`.

    Args:
        files: builds the store (called on the writer thread's start, not at import).
        shares: model -> share captured (0..1).
        queue_size: records waiting at most; more are dropped and counted.
        queue_max_bytes: input tensor bytes waiting at most; more are dropped and counted.
        max_request_bytes: a request whose inputs hold more bytes is not captured.
        flush_interval_s: the writer's longest sleep.
        events: builds the optional CloudEvents sink (`cloudevents.CloudEventsSink`), on
            the writer thread's start; None = no events.
    """

    def __init__(
        self,
        files: Callable[[], CaptureFiles],
        shares: Mapping[str, float],
        queue_size: int,
        max_request_bytes: int,
        flush_interval_s: float,
        events: Callable[[], CloudEventsSink] | None = None,
        queue_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._open_files = files
        self._open_events = events
        self._events: CloudEventsSink | None = None
        self._files: CaptureFiles | None = None
        self._shares = {model: share for model, share in shares.items() if share > 0}
        self._queue: collections.deque[CaptureRecord] = collections.deque()
        self._capacity = queue_size
        self._max_queued = queue_max_bytes
        # input bytes queued = in - out; each counter has one writer thread (no lock)
        self._bytes_in = 0  # the event loop's
        self._bytes_out = 0  # the writer thread's
        self._max_bytes = max_request_bytes
        self._interval_s = flush_interval_s
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._close_files = False  # the next pass closes every open file
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._done = 0  # records written or failed
        self.counters = CaptureCounters()

    def observe(self, outcome: CallOutcome) -> None:
        """The outcome observer: capture the request's final call when it is sampled."""
        if not outcome.final:
            return
        request = outcome.request
        share = self._shares.get(request.model)
        if share is None or request.request_id.startswith(REPLAY_PREFIX):
            return
        if not keep(share, request.model, request.routing_key, request.request_id):
            return
        size = sum(a.nbytes for a in request.inputs.values())
        if size > self._max_bytes:
            self.counters.too_large += 1
            return
        response = outcome.response
        self.submit(
            CaptureRecord(
                request.request_id, outcome.ts, request.model, outcome.arm, outcome.version,
                request.routing_key, outcome.elapsed_s, outcome.status, outcome.error,
                outcome.kind == "failover", request.inputs,
                None if response is None else response.outputs, size,
            )
        )  # fmt: skip

    def submit(self, record: CaptureRecord) -> bool:
        """Queue one record; False (and counted) when the queue holds `queue_size` records
        or `queue_max_bytes` of input tensors. Never blocks."""
        queued_bytes = self._bytes_in - self._bytes_out
        if len(self._queue) >= self._capacity or queued_bytes + record.nbytes > self._max_queued:
            self.counters.dropped += 1
            if self.counters.dropped == 1:
                logger.warning("capture queue is full; dropping records (counted)")
            return False
        self._queue.append(record)
        self._bytes_in += record.nbytes
        self.counters.submitted += 1
        return True

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._files = self._open_files()  # here: a missing pyarrow fails the start
        self._events = self._open_events() if self._open_events is not None else None
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout_s: float | None = None, close_files: bool = True) -> bool:
        """Wait (blocking: call it off the loop) until everything submitted so far is
        written, and the open files closed when `close_files`; False past `timeout_s`."""
        if self._thread is None:
            return True
        target = self.counters.submitted
        with self._progress:
            self._close_files = close_files
            self._wake.set()
            return self._progress.wait_for(
                lambda: self._done >= target and not self._close_files, timeout_s
            )

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what waits, close the files, stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout_s)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    def snapshot(self) -> CaptureCounters:
        return dataclasses.replace(self.counters)

    def metrics_updater(self, registry: CollectorRegistry) -> Callable[[], None]:
        """`dualserve_capture_records_total{fate}` and `dualserve_capture_waiting` on
        `registry`, brought up to date by the returned call (`GatewayMetrics.before_render`):
        the request's path touches plain integers only."""
        from prometheus_client import Counter, Gauge

        records = Counter(
            "dualserve_capture_records", "Captured records by fate (submitted, dropped,"
            " too_large, written, write_errors)", ["fate"], registry=registry,
        )  # fmt: skip
        waiting = Gauge(
            "dualserve_capture_waiting", "Captured records waiting for the writer",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        reported = CaptureCounters()

        def update() -> None:
            now = self.snapshot()
            for fate in _FATES:
                delta = getattr(now, fate) - getattr(reported, fate)
                if delta > 0:
                    records.labels(fate).inc(delta)
                    setattr(reported, fate, getattr(now, fate))
            waiting.set(self.waiting)

        return update

    def _run(self) -> None:
        files = self._files
        assert files is not None
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            self._pass(files)
            if self._stopping:
                self._pass(files)
                files.close_all()
                if self._events is not None:
                    self._events.close()
                return

    def _send_events(self, events: CloudEventsSink, batch: list[CaptureRecord]) -> None:
        try:
            events.send(batch)
        except Exception:  # counted by the sink; nothing may stop the writer
            logger.exception("capture CloudEvents failed")
        self.counters.cloudevents_sent = events.sent
        self.counters.cloudevents_failed = events.failed

    def _pass(self, files: CaptureFiles) -> None:
        queue = self._queue
        batch = [queue.popleft() for _ in range(len(queue))]
        self._bytes_out += sum(record.nbytes for record in batch)
        if batch:
            try:
                self.counters.written += files.write(batch)
            except Exception:  # a failing write must not stop the capture; it is counted
                logger.exception("capture write of %d records failed", len(batch))
                self.counters.write_errors += len(batch)
            if self._events is not None:
                self._send_events(self._events, batch)
        with self._progress:
            self._done += len(batch)
            try:
                if self._close_files:
                    files.close_all()
                else:
                    files.tick()
            except Exception:
                logger.exception("capture file rotation failed")
            self._close_files = False
            self._progress.notify_all()
