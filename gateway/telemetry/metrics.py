"""Prometheus metrics: a registry per app, or every worker's figures in multiprocess mode.

One process (tests build several apps in one): each `GatewayMetrics` has its own registry.
Several workers (`settings.workers > 1`): the supervisor sets `PROMETHEUS_MULTIPROC_DIR` before
it spawns them, so prometheus_client keeps every value in a file per worker, and `render`
sums the files of all workers, the dead ones' included (a scrape through any worker counts
each request once); breaker states stay per worker, with a `pid` label (prometheus_client's
multiprocess mode: https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.routing.shadow import Comparison

if TYPE_CHECKING:
    from gateway.experiments.log.sink import LogHealth

# Sub-millisecond resolution: the gateway's own overhead is measured in microseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class GatewayMetrics:
    """Requests, latency (total, upstream, the gateway's own), shadow, breakers, failovers.

    The per-request figures go through `answered`, `upstream_call` and `breaker_state`,
    which keep each labelled child once made: `labels()` checks and joins its label values
    and takes a lock on every call (measured: ~1.4 us per call here, three per request).
    Nothing removes a child from these metrics, so a kept child stays the registry's.
    """

    def __init__(self) -> None:
        # prometheus_client chose its value storage from this variable when it was imported.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dualserve_requests", "Prediction requests answered",
            ["model", "arm", "protocol", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "dualserve_request_latency_seconds", "Request latency at the gateway",
            ["model", "arm", "protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_latency = Histogram(
            "dualserve_upstream_latency_seconds", "Time spent in the backend call",
            ["model", "arm"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = Histogram(
            "dualserve_gateway_overhead_seconds", "Gateway time per request, upstream excluded",
            ["protocol"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.shadow = Counter(
            "dualserve_shadow_comparisons", "Shadow comparisons by result",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.shadow_diff = Histogram(
            "dualserve_shadow_max_abs_diff", "Largest |probability difference| per shadow call",
            ["model"], buckets=(1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0), registry=r,
        )  # fmt: skip
        self.breaker = Gauge(
            "dualserve_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            ["arm"], registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.failovers = Counter(
            "dualserve_failovers", "Requests answered by the other framework after a failure",
            ["model", "from_arm"], registry=r,
        )  # fmt: skip

        self.log_health = LogHealthMetrics(r)
        self._before_render: list[Callable[[], None]] = []

        self._answered: dict[tuple[str, str, str], tuple[Counter, Histogram, Histogram]] = {}
        self._upstream: dict[tuple[str, str], Histogram] = {}
        self._breaker: dict[str, tuple[Gauge, int]] = {}

    def answered(
        self, model: str, arm: str, protocol: str, total_s: float, upstream_s: float
    ) -> None:
        """One request answered (status 200): its count, latency and the gateway's share."""
        children = self._answered.get((model, arm, protocol))
        if children is None:
            children = self._answered[(model, arm, protocol)] = (
                self.requests.labels(model, arm, protocol, "200"),
                self.latency.labels(model, arm, protocol),
                self.overhead.labels(protocol),
            )
        requests, latency, overhead = children
        requests.inc()
        latency.observe(total_s)
        overhead.observe(max(total_s - upstream_s, 0.0))

    def upstream_call(self, model: str, arm: str, seconds: float) -> None:
        """One answered upstream call's seconds."""
        child = self._upstream.get((model, arm))
        if child is None:
            child = self._upstream[(model, arm)] = self.upstream_latency.labels(model, arm)
        child.observe(seconds)

    def breaker_state(self, arm: str, state: int) -> None:
        """The arm's breaker state after a call (written only when it changed)."""
        known = self._breaker.get(arm)
        if known is not None and known[1] == state:
            return
        child = self.breaker.labels(arm) if known is None else known[0]
        child.set(state)
        self._breaker[arm] = (child, state)

    def observe_shadow(self, model: str, result: Comparison | None) -> None:
        if result is None:
            self.shadow.labels(model, "dropped").inc()
            return
        self.shadow.labels(model, "agree" if result.agreed else "disagree").inc()
        self.shadow_diff.labels(model).observe(result.max_abs_diff)

    def before_render(self, update: Callable[[], None]) -> None:
        """Call `update()` before every render (to bring this process's figures up to date)."""
        self._before_render.append(update)

    def render(self) -> bytes:
        """The text exposition of this app's registry, or of every worker's files."""
        for update in self._before_render:
            update()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)


_LOG_FATES = ("submitted", "written", "dropped", "write_errors")


class LogHealthMetrics:
    """The prediction log's health, per worker (`worker` = its pid) and summed.

    Counters `dualserve_prediction_log_records_total{fate}` (every worker's, the ended
    ones' included, summed) and `dualserve_prediction_log_worker_records_total{worker,
    fate}`, with `fate` one of submitted, written, dropped, write_errors (see
    `LogCounters`); gauges `..._waiting_records` (buffered or in flight) and
    `..._store_up` (1 up, 0 down), per live worker and summed over live workers
    (`..._stores_down` counts the workers that see their store down). Every answered
    request is one submitted record or one dropped one, so `written + dropped +
    write_errors + waiting` accounts for every request a worker answered.
    The log keeps plain integers (`submit` costs no metric call); `update` adds the
    difference since the last update (at every scrape and every second).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.records = Counter(
            "dualserve_prediction_log_records", "Prediction log records by fate, all workers",
            ["fate"], registry=r,
        )  # fmt: skip
        self.worker_records = Counter(
            "dualserve_prediction_log_worker_records", "Prediction log records by fate",
            ["worker", "fate"], registry=r,
        )  # fmt: skip
        self.waiting = Gauge(
            "dualserve_prediction_log_waiting_records",
            "Records buffered or in flight to the store, all live workers",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.worker_waiting = Gauge(
            "dualserve_prediction_log_worker_waiting_records",
            "Records buffered or in flight to the store", ["worker"],
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.store_up = Gauge(
            "dualserve_prediction_log_store_up", "1 if the log's store takes writes, else 0",
            ["worker"], registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.stores_down = Gauge(
            "dualserve_prediction_log_stores_down", "Live workers whose log store is down",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self._reported = dict.fromkeys(_LOG_FATES, 0)

    def update(self, health: LogHealth, worker: str | None = None) -> None:
        """Bring the series of `worker` (default: this pid) to `health`."""
        worker = worker or str(os.getpid())
        for fate in _LOG_FATES:
            value = int(getattr(health.counters, fate))
            delta = value - self._reported[fate]
            if delta > 0:
                self.records.labels(fate).inc(delta)
                self.worker_records.labels(worker, fate).inc(delta)
                self._reported[fate] = value
        self.waiting.set(health.waiting)
        self.worker_waiting.labels(worker).set(health.waiting)
        self.store_up.labels(worker).set(1 if health.store_up else 0)
        self.stores_down.set(0 if health.store_up else 1)
