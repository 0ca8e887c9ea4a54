"""Run one sweep cell: Locust headless in a subprocess, then read what it measured.

A cell is (model, target, protocol, load, repeat), where the load is either closed loop
(`concurrency` users, each waiting for its answer) or open loop (`arrival` poisson or
constant at `rate` requests/s, at most `concurrency` requests in flight). Locust writes
its own CSVs (`--csv`, kept as raw data); the numbers the report uses come from the HDR
histograms, drop counts and CPU seconds each Locust process wrote (`loadtest.users.recorder`).

Closed-loop cells also get a p99 corrected for coordinated omission, beside the measured
one: the histogram corrected at an expected interval of the cell's mean latency, which is
the mean interval between one user's requests in a closed loop without think time
(Little's law: concurrency / throughput); see `gateway.telemetry.histogram`. The added
values include short ones, so in a tight distribution the corrected p99 can come out a
little below the measured one; after a stall it is far above it. Open-loop latencies run
from the scheduled send time, so they need no correction: there both columns hold the
same value.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.telemetry.histogram import LatencyHistogram, merge_all
from loadtest.targets import Target
from loadtest.users.stability import saturated

LOCUSTFILE = Path(__file__).parent / "users" / "locustfile.py"


@dataclass(frozen=True)
class Timing:
    """How long a cell runs: warm-up, then at least `min_s`, at most `cap_s` seconds."""

    warmup_s: float = 1.0
    min_s: float = 5.0
    cap_s: float = 10.0
    window_s: float = 1.0
    windows: int = 3
    tolerance: float = 0.10


@dataclass(frozen=True)
class CellSpec:
    model: str
    target: Target
    concurrency: int
    repeat: int
    timing: Timing
    workers: int = 1
    arrival: str = "closed"  # or an open-loop arrival: poisson, constant
    rate: float = 0.0  # offered requests/s (open loop)
    slo_ms: float = 0.0  # the p99 latency objective for goodput; 0: none

    @property
    def key(self) -> str:
        name = self.target.name.replace("->", "-to-").replace("/", "-")
        load = (
            f"c{self.concurrency}" if self.arrival == "closed" else f"{self.arrival}{self.rate:g}"
        )
        return f"{self.model}_{name}_{self.target.protocol}_{load}_r{self.repeat}"


@dataclass(frozen=True)
class CellResult:
    """One cell's numbers; this is one row of `cells.csv`."""

    model: str
    target: str
    protocol: str
    framework: str
    route: str
    concurrency: int
    repeat: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    loadgen_cpu: float
    saturated: bool
    verdict: str
    locust_requests: int
    arrival: str = "closed"
    offered_rate: float = 0.0
    dropped: int = 0
    p99_corrected_ms: float = math.nan
    goodput: float = math.nan
    gateway_ms: float = math.nan  # mean `Server-Timing` gateway;dur over the replies
    upstream_ms: float = math.nan  # mean `Server-Timing` upstream;dur (the gateway's backend call)
    server_ms: float = math.nan  # the backend's own mean request time (its metrics)
    server_queue_ms: float = math.nan  # of which queued (batching / TorchServe's queue)
    server_compute_ms: float = math.nan  # of which running the model
    box_cpu: float = math.nan  # the machine's CPU use during the cell, 0-1 (all cores)


def locust_argv(spec: CellSpec, csv_prefix: Path) -> list[str]:
    """The headless Locust command line of one cell."""
    t = spec.timing
    # a bound only (the controller quits the run): generous, as start-up is slow under load
    run_time = int(t.warmup_s + t.cap_s + 3 * t.window_s + 30)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",  # closed loop: the users; open loop: the most requests in flight
        str(spec.concurrency),
        "-r",
        str(max(spec.concurrency * 10, 10)),
        "-t",
        f"{run_time}s",
        "--host",
        spec.target.host,
        "--csv",
        str(csv_prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "2",
        "--exit-code-on-error",
        "0",
        "--skip-log-setup",
    ]
    if spec.workers > 1:
        argv += ["--processes", str(spec.workers)]
    return [*argv, spec.target.user_class]


def cell_config(spec: CellSpec, out_dir: Path, payloads: Path) -> dict[str, Any]:
    t, target = spec.timing, spec.target
    return {
        "path": target.path,
        "headers": target.headers,
        "sticky": target.sticky,
        "payloads": str(payloads),
        "out_dir": str(out_dir),
        "model": spec.model,
        "warmup_s": t.warmup_s,
        "min_s": t.min_s,
        "cap_s": t.cap_s,
        "window_s": t.window_s,
        "windows": t.windows,
        "tolerance": t.tolerance,
        "user_class": target.user_class,
        "arrival": spec.arrival,
        "rate": spec.rate,
        "workers": spec.workers,
    }


def run_cell(
    spec: CellSpec, out_dir: Path, payloads: Path, cpus: set[int] | None = None
) -> CellResult:
    """Run Locust for one cell (bounded by its own run time plus a margin) and read it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "cell.json"
    config_file.write_text(json.dumps(cell_config(spec, out_dir, payloads), indent=2))
    env = {**os.environ, **spec.target.env, "DUALSERVE_LOADTEST_CELL": str(config_file)}
    argv = locust_argv(spec, out_dir / "locust")
    timeout = spec.timing.warmup_s + spec.timing.cap_s + 120
    with (out_dir / "locust.log").open("wb") as log:
        subprocess.run(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    return read_cell(spec, out_dir)


def read_cell(spec: CellSpec, out_dir: Path) -> CellResult:
    """Merge the per-process histograms, drop counts and CPU records of a finished cell."""
    records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("process-*.json"))]
    loaders = [r for r in records if r["role"] != "master"]
    if not loaders:
        log = (out_dir / "locust.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"cell {spec.key}: Locust wrote no measurements\n{log}")
    hist = merge_all([LatencyHistogram.from_json(r["histogram"]) for r in loaders])
    seconds = max(float(r["wall_s"]) for r in loaders)
    cpu = max(float(r["cpu_s"]) / float(r["wall_s"]) if r["wall_s"] else 0.0 for r in records)
    found = hist.percentiles((50.0, 90.0, 99.0))
    write_latency(spec, out_dir, hist, loaders)
    timed = server_timing_means(loaders)
    return CellResult(
        model=spec.model,
        target=spec.target.name,
        protocol=spec.target.protocol,
        framework=spec.target.framework,
        route=spec.target.route,
        concurrency=spec.concurrency,
        repeat=spec.repeat,
        requests=hist.count,
        errors=sum(int(r["errors"]) for r in loaders),
        seconds=seconds,
        throughput=hist.count / seconds if seconds > 0 else 0.0,
        p50_ms=found[50.0] * 1000,
        p90_ms=found[90.0] * 1000,
        p99_ms=found[99.0] * 1000,
        max_ms=hist.max * 1000 if hist.count else math.nan,
        mean_ms=hist.mean * 1000,
        loadgen_cpu=cpu,
        saturated=any(saturated(r["cpu_s"], r["wall_s"]) for r in records),
        verdict=_read_json(out_dir / "controller.json").get("verdict", "unknown"),
        locust_requests=_locust_count(out_dir / "locust_stats.csv"),
        arrival=spec.arrival,
        offered_rate=spec.rate,
        dropped=sum(int(r.get("dropped", 0)) for r in loaders),
        p99_corrected_ms=_corrected_p99_ms(hist, spec.arrival),
        goodput=hist.count_at_or_below(spec.slo_ms / 1000) / seconds
        if spec.slo_ms > 0 and seconds > 0
        else math.nan,
        gateway_ms=timed.get("gateway", math.nan),
        upstream_ms=timed.get("upstream", math.nan),
    )


def server_timing_means(loaders: list[dict[str, Any]]) -> dict[str, float]:
    """Mean `Server-Timing` duration per name (ms) over every process's replies."""
    replies = sum(int(r.get("server_timing", {}).get("replies", 0)) for r in loaders)
    sums: dict[str, float] = {}
    for r in loaders:
        for name, ms in r.get("server_timing", {}).get("sum_ms", {}).items():
            sums[name] = sums.get(name, 0.0) + float(ms)
    return {name: total / replies for name, total in sums.items()} if replies else {}


def write_latency(
    spec: CellSpec, out_dir: Path, hist: LatencyHistogram, loaders: list[dict[str, Any]]
) -> None:
    """`<cell>/latency.json`: the cell's merged HDR histogram (for the percentile spectrum)
    and p50/p99 per second of the measurement (each process's second-th histogram merged;
    processes start their clocks within a fraction of a second of each other)."""
    seconds: dict[int, list[LatencyHistogram]] = {}
    for r in loaders:
        for second, data in r.get("timeline", {}).items():
            seconds.setdefault(int(second), []).append(LatencyHistogram.from_json(data))
    timeline = []
    for second in sorted(seconds):
        merged = merge_all(seconds[second])
        p = merged.percentiles((50.0, 99.0))
        timeline.append([second, merged.count, p[50.0] * 1000, p[99.0] * 1000])
    record = {
        "model": spec.model,
        "target": spec.target.name,
        "protocol": spec.target.protocol,
        "arrival": spec.arrival,
        "concurrency": spec.concurrency,
        "offered_rate": spec.rate,
        "repeat": spec.repeat,
        "histogram": hist.to_json(),
        "timeline": {"columns": ["second", "count", "p50_ms", "p99_ms"], "rows": timeline},
    }
    (out_dir / "latency.json").write_text(json.dumps(record))


def _corrected_p99_ms(hist: LatencyHistogram, arrival: str) -> float:
    """Closed loop: p99 corrected at the mean latency as the expected interval; open loop:
    the p99 as measured (already from the scheduled send times)."""
    if hist.count == 0:
        return math.nan
    interval = hist.mean
    if arrival != "closed" or not interval > 0:
        return hist.percentile(99) * 1000
    return hist.corrected(interval).percentile(99) * 1000


def error_samples(out_dir: Path) -> list[str]:
    samples: list[str] = []
    for path in sorted(out_dir.glob("process-*.json")):
        samples += json.loads(path.read_text()).get("error_samples", [])
    return samples


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _locust_count(stats_csv: Path) -> int:
    """Locust's own request count, kept as a rough cross-check of the histograms only: it
    includes the warm-up, and its final CSV write can miss the last second."""
    if not stats_csv.is_file():
        return 0
    with stats_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated":
                return int(row["Request Count"])
    return 0
