"""Does reading an experiment's analysis cost the serving process anything? Throughput,
p99 and RSS of pinned predictions, with and without `GET /admin/experiments/{id}` in a loop.

    python -m benchmarks.experiments.analysis_load [--rows 1000000] [--seconds 15] [--rounds 2]
        [--modes off,rows,aggregates] [--keep DIR]

The gateway runs in process (ASGI) in front of fake upstreams that answer after
`--upstream-ms`, its prediction log a SQLite file seeded with `--rows` rows of its own
experiment (`analysis_scale.seed`). `--concurrency` clients send pinned predictions for
`--seconds` while one admin client reads the analysis again and again (modes):

- `off`: no analysis (the baseline);
- `rows`: the row path as it was before issue 23: every row read on the log's thread of
  the serving process, `analyse` in a worker thread of it (`asyncio.to_thread`);
- `aggregates`: today's: the analyst process on the database's aggregates.

Each (mode, round) runs in a fresh process, modes interleaved round by round; the table
gives requests/s, p50/p99, ratios to `off`, analyses completed, the serving process's peak
RSS (its own, from `getrusage`), its CPU per request (user + system, so an analysis it
runs itself counts), and the analyst process's peak RSS (sampled); medians over rounds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

EXPERIMENT = "toy-ab"
BODY = {"instances": [[0.0, 5.0, 1.0, 2.0]]}


def _legacy(service: Any) -> Any:
    """The serving process's analysis before issue 23 (bench-only: the row path)."""
    from gateway.experiments import state_store
    from gateway.experiments.stats.analysis import analyse

    async def analyse_rows(experiment: str, since: float | None = None) -> dict[str, Any]:
        log = service._require_log()
        rows = await log.run(lambda store: store.records(experiment, since), timeout_s=600)
        events = await service.control.read(state_store.read_events, experiment)
        return await asyncio.to_thread(analyse, rows, events, experiment)

    return analyse_rows


async def _run(  # noqa: C901 - one scenario, read top to bottom
    db: Path, mode: str, seconds: float, concurrency: int, upstream_s: float
) -> dict:
    import httpx
    import numpy as np
    import psutil

    from gateway.app import create_app
    from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

    folder = Path(tempfile.mkdtemp(prefix="analysis-load-"))
    experiments = {  # no retention: the seeded rows are years old
        "database_url": f"sqlite:///{db}",
        "data_dir": str(folder),
        "retention_days": None,
    }
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    for upstream in upstreams.values():
        upstream.delay = upstream_s
    app = create_app(settings_for(make_store(folder / "store"), experiments=experiments), upstreams)  # type: ignore[arg-type]
    service = app.state.gateway.experiments
    if mode == "rows":
        service.analyse = _legacy(service)
    latencies: list[float] = []
    analyses, analyst_peak = 0, 0.0
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=600) as client,
    ):
        for _ in range(200):  # warm up
            await client.post(
                "/v1/models/toy:predict", json=BODY, headers={"X-Backend": "tensorflow"}
            )
        stop = time.perf_counter() + seconds

        async def predict(k: int) -> None:
            headers = {"X-Backend": "tensorflow" if k % 2 else "pytorch"}
            while time.perf_counter() < stop:
                started = time.perf_counter()
                reply = await client.post("/v1/models/toy:predict", json=BODY, headers=headers)
                latencies.append(time.perf_counter() - started)
                assert reply.status_code == 200

        async def admin() -> None:
            nonlocal analyses, analyst_peak
            auth = {"Authorization": "Bearer admin-secret"}
            while time.perf_counter() < stop:
                reply = await client.get(f"/admin/experiments/{EXPERIMENT}", headers=auth)
                assert reply.status_code == 200, reply.text
                analyses += 1

        async def sample_analyst() -> None:
            nonlocal analyst_peak
            while time.perf_counter() < stop:
                pid = service.analyst.pid if service.analyst is not None else None
                if pid is not None and mode == "aggregates":
                    try:
                        rss = psutil.Process(pid).memory_info().rss / 2**20
                        analyst_peak = max(analyst_peak, rss)
                    except psutil.NoSuchProcess:
                        pass
                await asyncio.sleep(0.1)

        started, cpu = time.perf_counter(), time.process_time()
        tasks = [predict(k) for k in range(concurrency)] + [sample_analyst()]
        if mode != "off":
            tasks.append(admin())
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(folder, ignore_errors=True)
    lat = np.array(latencies)
    return {
        "rps": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "analyses": analyses,
        "cpu_ms_per_request": cpu * 1e3 / max(1, lat.size),
        "gateway_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "analyst_peak_mib": analyst_peak,
    }


def child(db: str, mode: str, seconds: float, concurrency: int, upstream_s: float) -> None:
    """One (mode, round) in this process; prints its figures as JSON."""
    figures = asyncio.run(_run(Path(db), mode, seconds, concurrency, upstream_s))
    print(json.dumps(figures))


def main(
    rows: Annotated[int, typer.Option(help="rows in the experiment's log")] = 1_000_000,
    seconds: Annotated[float, typer.Option(help="load per (mode, round)")] = 15.0,
    rounds: Annotated[int, typer.Option(help="rounds (modes interleaved)")] = 2,
    modes: Annotated[str, typer.Option(help="off, rows, aggregates")] = "off,rows,aggregates",
    concurrency: Annotated[int, typer.Option(help="prediction clients")] = 8,
    upstream_ms: Annotated[float, typer.Option(help="fake backend latency")] = 1.0,
    keep: Annotated[Path | None, typer.Option(help="folder for the seeded log")] = None,
) -> None:
    from benchmarks.experiments.analysis_scale import seed

    folder = keep or Path(tempfile.mkdtemp(prefix="analysis-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"gateway-log-{rows}.sqlite3"
    if not db.exists():
        seed(f"sqlite:///{db}", rows, experiment=EXPERIMENT, model="toy")
    names = modes.split(",")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            code = (
                "from benchmarks.experiments.analysis_load import child; "
                f"child({str(db)!r}, {name!r}, {seconds}, {concurrency}, {upstream_ms / 1000})"
            )
            out = subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            )
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = _mean(results.get("off") or results[names[0]])
    print(
        f"| mode ({rows:,} rows, {concurrency} clients) | req/s | p50 ms | p99 ms | req/s ratio "
        "| p99 ratio | analyses | gateway CPU ms/request | gateway peak RSS MiB "
        "| analyst peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        m = _mean(results[name])
        print(
            f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
            f"{m['rps'] / base['rps']:.2f} | {m['p99_ms'] / base['p99_ms']:.2f} | "
            f"{m['analyses']:.1f} | {m['cpu_ms_per_request']:.2f} | {m['gateway_peak_mib']:.0f} | "
            f"{m['analyst_peak_mib']:.0f} |"
        )


def _mean(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each figure's median over the rounds (a shared machine's bursts skew a mean)."""
    return {key: float(statistics.median(run[key] for run in runs)) for key in runs[0]}


if __name__ == "__main__":
    typer.run(main)
