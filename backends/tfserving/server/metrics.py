"""Prometheus metrics under TF Serving's names, served on the REST port.

Histograms use prometheus-client. Counters are rendered here because TF Serving exports
them without the `_total` suffix prometheus-client would add (`:tensorflow:serving:
request_count{model_name,status}`), and dashboards written for the real server must
find the same series here.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest

# TF Serving's latency buckets: exponential, 10 us * 1.8^i, 33 buckets (~2.5 h).
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024)


class TFCounter:
    """A labelled counter exported as TF Serving does: `# TYPE name counter`, no suffix."""

    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[values] += amount

    def render(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        lines = [f"# TYPE {self.name} counter"]
        for values, count in items:
            pairs = ",".join(
                f'{k}="{_escape(v)}"' for k, v in zip(self.labels, values, strict=True)
            )
            lines.append(f"{self.name}{{{pairs}}} {count:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServerMetrics:
    """Every metric the server records; one instance per server (no global registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_count = TFCounter(
            ":tensorflow:serving:request_count", ("model_name", "status")
        )
        self.load_attempts = TFCounter(
            ":tensorflow:cc:saved_model:load_attempt_count", ("model_path", "status")
        )
        self.batches_run = TFCounter(
            ":tensorflow:serving:batching_session:wrapped_run_count", ("model_name",)
        )
        self.request_latency = self._histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
        )
        self.runtime_latency = self._histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ("model_name", "API", "runtime"),
        )
        self.batch_size = self._histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Distribution of the number of examples in each batch run by the batcher.",
            ("model_name",),
            BATCH_SIZE_BUCKETS,
        )
        self.queuing_latency = self._histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ("model_name",),
        )
        self.warmup_latency = self._histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ("model_path",),
        )

    def _histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...] = LATENCY_BUCKETS_US,
    ) -> Histogram:
        return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

    def record_batch(self, model: str, size: int, waits: Sequence[float]) -> None:
        """The batcher's hook: batch size, queueing time of each task (s), batch count."""
        self.batch_size.labels(model).observe(size)
        self.batches_run.inc(model)
        for wait in waits:
            self.queuing_latency.labels(model).observe(wait * 1e6)

    def render(self) -> bytes:
        """The whole Prometheus text page."""
        counters = (self.request_count, self.load_attempts, self.batches_run)
        return "".join(c.render() for c in counters).encode() + generate_latest(self.registry)
