"""What an experiment's analysis costs at production volume: time and peak memory.

    python -m benchmarks.experiments.analysis_scale [--rows 10000,100000,1000000]
        [--paths rows,aggregates,looks]
        [--db sqlite|postgresql://...] [--keep DIR]

Seeds a synthetic prediction log (SQLite file by default, or a PostgreSQL URL) with the
project's own store (`SqlLogStore.write_batch`, `add_feedback`, the state store's events):
two arms 50/50 sticky by routing key, 10 requests a unit, 2% errors, 20% of answers
labelled, 5% mirrored. Then, each in a fresh process (so its peak RSS is its own):

- `rows`: the row-level path (`store.records` -> `analyse`), the one before issue 23;
- `aggregates`: the database's per-unit aggregates (`log.aggregates`) -> `analyse_aggregates`;
- `looks`: the rollout controller's incremental looks (`log.increments`): the first one
  (the whole log), then the next after 1,000 new rows arrived (only those are read).

Prints, per size and path: seconds (read + analyse) and the process's peak RSS (MiB).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from gateway.experiments.log.records import COLUMNS, Event, key_hash
from gateway.settings import ExperimentSpec

EXPERIMENT = "scale"
ARMS = ("tensorflow", "pytorch")
_BATCH = 20_000


def seed(
    url: str, rows: int, seed_value: int = 0, experiment: str = EXPERIMENT, model: str = "m"
) -> None:
    """Write `rows` served rows (plus 5% shadow rows, 20% labelled) of `experiment` on
    `model`, and its define event."""
    from gateway.experiments import state_store
    from gateway.experiments.log.store import SqlLogStore

    store = SqlLogStore(_open(url))
    spec = ExperimentSpec(id=experiment, model=model, split={ARMS[0]: 50.0, ARMS[1]: 50.0})
    define = Event(experiment, "define", "bench", spec.model_dump(mode="json"), 1e9)
    with store._db.transaction() as cursor:
        state_store.add_event(store._db, cursor, define)
    rng = np.random.default_rng(seed_value)
    units = max(2, rows // 10)
    unit_arm = rng.random(units) < 0.5
    hashes = [key_hash(f"user{u}") for u in range(units)]
    for start in range(0, rows, _BATCH):
        count = min(_BATCH, rows - start)
        batch, labels = _batch(rng, start, count, units, unit_arm, hashes)
        batch = [(*r[:3], experiment, model, *r[5:]) for r in batch]
        store.write_batch(batch)
        store.add_feedback(labels, 2e9)
    store.close()


def _batch(
    rng: np.random.Generator,
    start: int,
    count: int,
    units: int,
    unit_arm: np.ndarray,
    hashes: list[str | None],
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    unit = rng.integers(0, units, count)
    ok = rng.random(count) >= 0.02
    latency = rng.gamma(2.0, 2.0, count) + 5.0
    top1 = rng.integers(0, 10, count)
    label = np.where(rng.random(count) < 0.8, top1, rng.integers(0, 10, count))
    labelled = rng.random(count) < 0.2
    shadowed = rng.random(count) < 0.05
    rows: list[tuple[Any, ...]] = []
    labels: list[tuple[str, int]] = []
    for i in range(count):
        n = start + i
        u = int(unit[i])
        arm, other = (ARMS[1], ARMS[0]) if unit_arm[u] else ARMS
        rid, ts = f"req{n:09d}", 1e9 + n * 0.001
        status = 200 if ok[i] else 503
        answer = int(top1[i])
        rows.append(
            (rid, "serve", ts, EXPERIMENT, "m", arm, 1, hashes[u], round(float(latency[i]), 4),
             status, answer if ok[i] else None, None, None, 0, arm)
        )  # fmt: skip
        if shadowed[i] and ok[i]:
            agreed = int(rng.random() < 0.9)
            rows.append(
                (rid, "shadow", ts + 0.0005, EXPERIMENT, "m", other, 1, hashes[u],
                 round(float(latency[i]) * 1.1, 4), 200, answer if agreed else (answer + 1) % 10,
                 None, agreed, 0, other)
            )  # fmt: skip
        if labelled[i] and ok[i]:
            labels.append((rid, int(label[i])))
    assert len(rows[0]) == len(COLUMNS)
    return rows, labels


def measure(url: str, path: str) -> dict[str, Any]:
    """Run one path's analysis of the seeded experiment; seconds and peak RSS (MiB)."""
    from gateway.experiments.log.store import SqlLogStore

    store = SqlLogStore(_open(url))
    started = time.perf_counter()
    if path == "rows":
        from gateway.experiments.stats.analysis import analyse

        result = analyse(store.records(EXPERIMENT), store.events(EXPERIMENT), EXPERIMENT)
    elif path == "looks":
        return _looks(url)
    else:
        from gateway.experiments.stats.analysis import analyse_store

        result = analyse_store(store, EXPERIMENT)
    seconds = time.perf_counter() - started
    store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decision = (result.get("decision") or {}).get("outcome")
    return {"seconds": round(seconds, 2), "peak_mib": round(peak, 1), "decision": decision}


def _looks(url: str, arriving: int = 1_000) -> dict[str, Any]:
    """The rollout controller's looks (`history=False`, incremental): the first reads the
    whole log; then `arriving` new rows (a second at 1,000 req/s) and their labels come,
    and the next look reads only them. Seconds of both, and the process's peak RSS."""
    from gateway.experiments.log.store import SqlLogStore
    from gateway.experiments.stats.analysis import analyse_store

    store = SqlLogStore(_open(url), look_lag_s=0.0)  # written synchronously: no lag
    started = time.perf_counter()
    first = analyse_store(store, EXPERIMENT, history=False)
    first_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    hashes: list[str | None] = [key_hash(f"new{u}") for u in range(arriving // 10)]
    start = 10**9 + time.time_ns() // 1000 % 10**9  # new request ids on a kept log too
    arm_of = rng.random(len(hashes)) < 0.5
    batch, labels = _batch(rng, start, arriving, len(hashes), arm_of, hashes)
    store.write_batch(batch)
    store.add_feedback(labels, 2e9)
    started = time.perf_counter()
    then = analyse_store(store, EXPERIMENT, history=False)
    next_s = time.perf_counter() - started
    store.close()
    requests = [sum(a["requests"] for a in r["arms"].values()) for r in (first, then)]
    assert requests[1] > requests[0], requests  # the next look read the new rows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decision = (then.get("decision") or {}).get("outcome")
    return {
        "seconds": f"{first_s:.2f} first, {next_s:.3f} next",
        "peak_mib": round(peak, 1),
        "decision": decision,
    }


def main(
    rows: Annotated[str, typer.Option(help="comma-separated log sizes")] = "10000,100000",
    paths: Annotated[str, typer.Option(help="rows, aggregates, looks")] = "rows,aggregates",
    db: Annotated[str, typer.Option(help="sqlite, or a postgresql:// URL")] = "sqlite",
    keep: Annotated[Path | None, typer.Option(help="folder for the SQLite logs")] = None,
) -> None:
    folder = keep or Path(tempfile.mkdtemp(prefix="analysis-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    print("| rows | path | seconds | peak RSS MiB | decision |")
    print("|---:|---|---:|---:|---|")
    for size in (int(s) for s in rows.split(",")):
        url = _url(db, folder, size)
        if db != "sqlite" or not (folder / f"log-{size}.sqlite3").exists():
            _child("seed", url, str(size))
        for path in paths.split(","):
            figures = json.loads(_child("measure", url, path))
            print(
                f"| {size:,} | {path} | {figures['seconds']} | {figures['peak_mib']} | "
                f"{figures['decision']} |",
                flush=True,
            )


def _open(url: str) -> Any:
    """The database with a bench's patience (PostgreSQL's statements up to 10 minutes)."""
    from gateway.control.database import StoreTimeouts, open_database

    return open_database(url, None, StoreTimeouts(statement_s=600.0))


def _url(db: str, folder: Path, size: int) -> str:
    if db == "sqlite":
        return f"sqlite:///{folder / f'log-{size}.sqlite3'}"
    return db  # PostgreSQL: one database, reseeded (truncate it between sizes yourself)


def _child(action: str, url: str, arg: str) -> str:
    """`seed` or `measure` in a fresh interpreter (its peak RSS its own)."""
    call = (
        f"seed({url!r}, {int(arg)})"
        if action == "seed"
        else f"print(json.dumps(measure({url!r}, {arg!r})))"
    )
    code = f"import json; from benchmarks.experiments.analysis_scale import seed, measure; {call}"
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout


if __name__ == "__main__":
    typer.run(main)
