"""Inside every Locust process: exact latencies after the warm-up, CPU, and the stop rule.

`install(environment, config)` wires three things to Locust's events:

- every process (standalone or worker) records each request's latency into a
  `LatencyHistogram` (and into one per second of the measurement, for the report's
  latency-over-time plot), from `warmup_s` after the test started until it stops, adds up
  the gateway's `Server-Timing` figures its users pass to `server_timing`, and writes it
  all with its own CPU seconds to `<out_dir>/process-<pid>.json`. Closed loop: Locust's
  float `response_time`. Open loop (`arrival` poisson or constant in the cell config):
  the time from the request's *scheduled* send time (`loadtest.users.openloop`) to its answer,
  and the scheduled requests that could not be sent on time are counted as dropped;
- the standalone or master process runs a controller that cuts the measurement into
  windows (from Locust's aggregated totals), applies the stability rule, quits the run
  when it is stable or capped, and writes `<out_dir>/controller.json`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import locust.runners
from locust.env import Environment
from locust.runners import WorkerRunner

from gateway.telemetry.histogram import LatencyHistogram
from loadtest.server_clock import parse_server_timing
from loadtest.users import openloop
from loadtest.users.stability import StabilityRule, Window, should_stop

# workers report to the master every second (default 3 s), so windows stay short
locust.runners.WORKER_REPORT_INTERVAL = 1.0
MAX_ERROR_SAMPLES = 5
_ACTIVE: list[ProcessRecord] = []  # this process's record, once `install` ran


def server_timing(value: str | None) -> None:
    """Count one reply's `Server-Timing` value (the users call this; None: no header)."""
    if value and _ACTIVE:
        _ACTIVE[0].on_server_timing(value)


@dataclass
class ProcessRecord:
    """What one Locust process measured after the warm-up."""

    out_dir: Path
    warmup_s: float
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    timeline: dict[int, LatencyHistogram] = field(default_factory=dict)
    timed: int = 0  # replies that carried Server-Timing
    timing_ms: dict[str, float] = field(default_factory=dict)  # summed `dur` per name
    errors: int = 0
    dropped: int = 0
    error_samples: list[str] = field(default_factory=list)
    measure_from: float | None = None
    stopped_at: float | None = None
    cpu_from: float = 0.0
    cpu_s: float = 0.0
    written: bool = False

    def start(self) -> None:
        gevent.spawn_later(self.warmup_s, self._open)

    def _open(self) -> None:
        self.measure_from, self.cpu_from = time.perf_counter(), time.process_time()

    @property
    def measuring(self) -> bool:
        return self.measure_from is not None and self.stopped_at is None

    def on_request(
        self,
        response_time: float,
        exception: Any = None,
        context: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not self.measuring:
            return
        if exception is None:
            scheduled = (context or {}).get("scheduled_at")
            seconds = float(response_time) / 1000
            now = time.perf_counter()
            if scheduled is not None:  # open loop: from the scheduled send time
                seconds = now - float(scheduled)
            self.histogram.record(seconds)
            second = int(now - (self.measure_from or now))
            self.timeline.setdefault(second, LatencyHistogram()).record(seconds)
            return
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(str(exception)[:300])

    def on_server_timing(self, value: str) -> None:
        if not self.measuring:
            return
        self.timed += 1
        for name, ms in parse_server_timing(value).items():
            self.timing_ms[name] = self.timing_ms.get(name, 0.0) + ms

    def on_drop(self, scheduled: float) -> None:
        """A scheduled request could not be sent on time (open loop only)."""
        if self.measuring and self.measure_from is not None and scheduled >= self.measure_from:
            self.dropped += 1

    def stop(self, **_: Any) -> None:
        schedule = openloop.installed()
        if schedule is not None and self.measuring:
            schedule.drop_unclaimed(time.perf_counter())
        if self.stopped_at is None:
            self.stopped_at = time.perf_counter()
            self.cpu_s = time.process_time() - self.cpu_from

    def write(self, role: str) -> None:
        if self.written:
            return
        self.stop()
        self.written = True
        wall = (self.stopped_at or 0.0) - self.measure_from if self.measure_from else 0.0
        record = {
            "pid": os.getpid(),
            "role": role,
            "wall_s": wall,
            "cpu_s": self.cpu_s,
            "errors": self.errors,
            "dropped": self.dropped,
            "error_samples": self.error_samples,
            "histogram": self.histogram.to_json(),
            "timeline": {str(k): h.to_json() for k, h in sorted(self.timeline.items())},
            "server_timing": {"replies": self.timed, "sum_ms": self.timing_ms},
        }
        path = self.out_dir / f"process-{os.getpid()}.json"
        path.write_text(json.dumps(record))


def install(environment: Environment, config: dict[str, Any]) -> None:
    """Attach the recorder (every process) and the controller (standalone or master)."""
    out_dir = Path(config["out_dir"])
    record = ProcessRecord(out_dir, float(config["warmup_s"]))
    _ACTIVE[:] = [record]
    role = _role(environment)
    if config.get("arrival", "closed") != "closed" and role != "master":
        per_process = float(config["rate"]) / max(1, int(config.get("workers", 1)))
        openloop.install(openloop.Schedule(per_process, config["arrival"], record.on_drop))
    events = environment.events
    events.test_start.add_listener(lambda **_: record.start())
    events.request.add_listener(record.on_request)
    events.test_stopping.add_listener(record.stop)
    events.test_stop.add_listener(lambda **_: record.write(role))
    events.quitting.add_listener(lambda **_: record.write(role))
    if role != "worker":
        events.test_start.add_listener(lambda **_: gevent.spawn(_control, environment, config))


def _role(environment: Environment) -> str:
    if isinstance(environment.runner, WorkerRunner):
        return "worker"
    return "master" if isinstance(environment.runner, locust.runners.MasterRunner) else "local"


def _control(environment: Environment, config: dict[str, Any]) -> None:
    """Windows after the warm-up; quit at the first stable point past min_s, or at cap_s."""
    rule = StabilityRule(config["window_s"], config["windows"], config["tolerance"])
    gevent.sleep(config["warmup_s"])
    started = time.perf_counter()
    history: list[Window] = []
    last = _totals(environment)
    verdict = None
    while verdict is None:  # bounded: should_stop answers "capped" at cap_s
        gevent.sleep(rule.window_s)
        now = _totals(environment)
        history.append(Window(rule.window_s, now[0] - last[0], now[1] - last[1]))
        last = now
        measured = time.perf_counter() - started
        verdict = should_stop(history, measured, config["min_s"], config["cap_s"], rule)
    summary = {"verdict": verdict, "measured_s": measured, "windows": [asdict(w) for w in history]}
    (Path(config["out_dir"]) / "controller.json").write_text(json.dumps(summary))
    assert environment.runner is not None
    environment.runner.quit()


def _totals(environment: Environment) -> tuple[int, float]:
    assert environment.runner is not None
    total = environment.runner.stats.total
    return total.num_requests, total.total_response_time
