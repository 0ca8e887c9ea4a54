"""Issue 23's first acceptance, on the real stack: does reading an experiment's analysis
(and the rollout controller) cost the gateway throughput, p99 or memory, with a log of
`--rows` rows?

    python -m benchmarks.experiments.analysis_stack [--rows 1000000] [--seconds 20]
        [--rounds 2] [--concurrency 8] [--workers 1] [--database sqlite|postgres]
        [--modes off,analysis[,controller]] [--model-store model_store] [--keep DIR]

What runs (every process stopped at the end, Ctrl-C included):

- the backends as `dualserve up` starts them: the bundled TF Serving-compatible server and
  TorchServe, on free loopback ports, serving `--model-store` (trained here, `digits-mlp`
  only, when it holds no `digits-mlp`);
- the experiments database: a SQLite file, or (`--database postgres`) a throwaway
  PostgreSQL cluster (`tests/integration/conftest.py::throwaway_postgres`, as the tests'),
  seeded before any gateway starts with `--rows` rows of experiment `stack-ab` on
  `digits-mlp` (`analysis_scale.seed`: arms `tensorflow` / `pytorch`, 50/50 by unit,
  timestamps from 2001-09-09 on, so retention is off) and with the events of a running
  experiment whose rollout is at its first step (define, start, `rollout` step 0 at 50%,
  just after the first row): the controller's current step holds every seeded row;
- per (mode, round), a fresh copy of that database (a file copy, or `CREATE DATABASE ...
  TEMPLATE`), and a fresh gateway (`--workers` processes, its own YAML config) on it.

Modes (`--modes`), interleaved round by round, the same load in each:

- `off`: the experiment without its `rollout` section, no admin reads;
- `analysis`: the experiment with its rollout (the controller analyses the step's rows at
  every tick where rows were added; `min_units_per_step` out of reach and margins wide,
  so it holds at step 0 and never moves the split) and one client reading
  `GET /admin/experiments/stack-ab` back to back with the admin token;
- `controller` (optional): the rollout controller alone, no admin reads (which of the
  two costs what).

The load (a process of its own, aiohttp): `--concurrency` clients pinned to `--arm`
(`X-Backend`: logged outside the experiment, routed the same in every mode), measured;
and `--feed-rps` unpinned requests a second with new routing keys (not measured), so the
experiment gains rows all along and the controller looks again at every tick, as under
production traffic. RSS of every process (the gateway's serving processes, its log
writers and analysts, PostgreSQL's, the backends') is sampled with psutil every 0.2 s.
The table gives medians over rounds; the gateway's RSS is the sum over its serving
processes (supervisor and workers), and "+N MiB" compares its peak in `analysis` with
its peak in `off`.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer
import yaml

EXPERIMENT = "stack-ab"
MODEL = "digits-mlp"
MODES = ("off", "analysis", "controller")  # the table's order; --modes picks
ROLLOUT_MODES = ("analysis", "controller")  # the experiment has its rollout there
MODULE = "benchmarks.experiments.analysis_stack"  # the load child imports it (not __main__)
FIRST_ROW_TS = 1e9  # analysis_scale.seed's rows start here, one a millisecond
SAMPLE_S = 0.2
TARGETS = {"throughput": 0.9, "p99": 1.3, "rss_mib": 100.0}


def say(line: str) -> None:
    print(line, flush=True)


# The experiment -------------------------------------------------------------------------


def experiment_spec(rollout: bool) -> dict[str, Any]:
    """`stack-ab` on `digits-mlp`, 50/50; with `rollout`, a rollout that holds at its
    first step (50%): the units it needs are out of reach, the margins (and so the
    guardrails) wide, so a look never advances nor rolls back."""
    spec: dict[str, Any] = {
        "id": EXPERIMENT,
        "model": MODEL,
        "split": {"tensorflow": 50.0, "pytorch": 50.0},
        "margins": {"error_rate_points": 100.0, "accuracy_points": 100.0, "p99_ms": 1e6},
    }
    if rollout:
        spec["rollout"] = {"steps": [50.0, 100.0], "min_units_per_step": 10**12}
    return spec


def seed_database(url: str, rows: int) -> None:
    """`rows` rows of `stack-ab` (`analysis_scale.seed`), then its start and its rollout
    at step 0, right after the first row: the step's rows are all but the first second's."""
    from benchmarks.experiments.analysis_scale import _open, seed
    from gateway.experiments import state_store
    from gateway.experiments.log.records import Event
    from gateway.experiments.rollout import first_step
    from gateway.settings import ExperimentSpec

    seed(url, rows, experiment=EXPERIMENT, model=MODEL)
    step = first_step(ExperimentSpec.model_validate(experiment_spec(rollout=True)))
    events = [
        Event(EXPERIMENT, "start", "bench: running since the first row", {}, FIRST_ROW_TS + 1e-5),
        Event(
            EXPERIMENT, "rollout", step.reason, {**step.as_event_details(), "evidence": {}},
            FIRST_ROW_TS + 2e-5,
        ),
    ]  # fmt: skip
    db = _open(url)
    try:
        with db.transaction() as cursor:
            for event in events:
                state_store.add_event(db, cursor, event)
    finally:
        db.close()


# The database ---------------------------------------------------------------------------


class SqliteDatabase:
    """The seeded SQLite file, copied for each run."""

    def __init__(self, folder: Path) -> None:
        self.seeded = folder / "seeded.sqlite3"
        self.url = f"sqlite:///{self.seeded}"
        self._folder = folder

    @contextmanager
    def copy(self, name: str) -> Iterator[str]:
        target = self._folder / f"{name}.sqlite3"
        shutil.copyfile(self.seeded, target)
        try:
            yield f"sqlite:///{target}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)

    def roots(self) -> list[int]:
        return []


class PostgresDatabase:
    """Database `seeded` of a throwaway cluster, copied for each run (`TEMPLATE`)."""

    def __init__(self, cluster_url: str) -> None:
        self._cluster = cluster_url
        self.url = self._in("seeded")
        self._sql("CREATE DATABASE seeded")

    def _in(self, name: str) -> str:
        return f"{self._cluster.rsplit('/', 1)[0]}/{name}"

    def _sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self._cluster, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]  # our own constant statements

    @contextmanager
    def copy(self, name: str) -> Iterator[str]:
        self._sql(f"CREATE DATABASE {name} TEMPLATE seeded")
        try:
            yield self._in(name)
        finally:
            self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def roots(self) -> list[int]:
        """The postmaster (its backends are its children)."""
        import psycopg

        with psycopg.connect(self._cluster) as conn:
            row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            data = Path(str(row.fetchone()[0]))  # type: ignore[index]
        return [int((data / "postmaster.pid").read_text().split()[0])]


# The stack ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backends:
    tensorflow: Any  # backends.tfserving.launcher.TFServingEndpoints
    pytorch: Any  # backends.torchserve.launcher.TorchServeEndpoints


def model_store(store: Path) -> Path:
    """`store`, with `digits-mlp` trained into it (both frameworks) if it has none."""
    import json as _json

    manifest = store / "manifest.json"
    if manifest.is_file() and MODEL in _json.loads(manifest.read_text()).get("models", {}):
        return store.resolve()
    from rich.console import Console

    from trainers.pipeline import TrainConfig, run_training

    say(f"training {MODEL} into {store} (no {MODEL} there)")
    run_training(TrainConfig(arch="mlp", model_store=store), Console(quiet=True))
    return store.resolve()


def start_backends(store: Path, run_dir: Path, stack: ExitStack) -> Backends:
    """TF Serving and TorchServe as `dualserve up` starts them (its settings), stopped
    when `stack` closes (`dualserve.stack.down`)."""
    from backends.tfserving.launcher import start_tfserving
    from backends.torchserve.launcher import start_torchserve
    from dualserve.stack import TF_SETTINGS, TORCH_SETTINGS, StackPaths, down

    paths = StackPaths(store, run_dir)
    stack.callback(down, paths)
    with ThreadPoolExecutor(max_workers=2) as pool:
        tf = pool.submit(start_tfserving, store, paths.tfserving_dir, TF_SETTINGS)
        torch = pool.submit(start_torchserve, store, paths.torchserve_dir, TORCH_SETTINGS)
        return Backends(tf.result(), torch.result())


@dataclass(frozen=True)
class Gateway:
    rest: str
    pid: int
    admin_token: str


def gateway_document(
    backends: Backends, store: Path, run_dir: Path, workers: int, url: str, rollout: bool
) -> dict[str, Any]:
    """`dualserve up`'s gateway config (`gateway_config`: ports chosen by the gateway),
    with `workers` processes and the bench's experiment on `url`, retention off."""
    from gateway.processes.launcher import CONFIG_FILE, gateway_config
    from gateway.settings import GatewaySettings, settings_document

    config = gateway_config(
        backends.tensorflow, backends.pytorch, store, run_dir, 0, 0, workers,
        config_file=run_dir / CONFIG_FILE,
    )  # fmt: skip
    document = settings_document(config)
    document["experiments"] = {
        "experiments": [experiment_spec(rollout)],
        "database_url": url,
        "retention_days": None,
    }
    GatewaySettings.model_validate(document)  # a field the gateway would refuse, named here
    return document


def start_gateway(document: dict[str, Any], run_dir: Path, stack: ExitStack) -> Gateway:
    """`python -m gateway` on `document` (as `gateway.processes.launcher.start_gateway`
    starts it), stopped when `stack` closes; returns once every worker serves."""
    import httpx

    from backends.process import LOOPBACK, start, stop, wait_until
    from gateway.processes.launcher import CONFIG_FILE, NAME, gateway_workers
    from gateway.processes.workers import read_workers

    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / CONFIG_FILE
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    command = [sys.executable, "-m", "gateway", "--config", str(config_file)]
    proc = start(NAME, [*command, "--run-dir", str(run_dir)], run_dir, cwd=run_dir)
    stack.callback(stop, proc, 10)

    def ready() -> bool:
        record = read_workers(run_dir)
        if record is None or len(gateway_workers(run_dir)) != document["workers"]:
            return False
        return httpx.get(f"http://{LOOPBACK}:{record['port']}/readyz", timeout=2).is_success

    wait_until(proc, ready, 120)
    record = read_workers(run_dir) or {}
    token = (run_dir / "admin_token").read_text().strip()
    return Gateway(f"http://{LOOPBACK}:{record['port']}", proc.pid() or 0, token)


# Memory ---------------------------------------------------------------------------------


def part_of(process: psutil.Process, root_part: str) -> str:
    """Which part a process is: the gateway's analyst or log writer (by module), else its
    root's part."""
    command = " ".join(process.cmdline())
    if "gateway.experiments.analyst" in command:
        return "analyst"
    if "gateway.experiments.log.writer" in command:
        return "log writer"
    return root_part


@dataclass
class MemorySampler:
    """Every `SAMPLE_S`, the RSS of each root's process tree (walked again each time:
    analysts start at the first analysis), summed per part; keeps each part's peak sum
    and first sum, its largest process, how many processes it had, and the CPU seconds
    (user + system) its processes used while sampled (a process that appeared later
    counts from its start)."""

    roots: dict[int, str]  # pid -> part
    peak: dict[str, float] = field(default_factory=dict)
    largest: dict[str, float] = field(default_factory=dict)
    pids: dict[str, set[int]] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    _cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # part, first, last
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def cpu_s(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for part, first, last in self._cpu.values():
            used[part] = used.get(part, 0.0) + last - first
        return used

    def sample(self) -> None:
        sums: dict[str, float] = {}
        for root, root_part in self.roots.items():
            try:
                top = psutil.Process(root)
                tree = [top, *top.children(recursive=True)]
            except psutil.Error:
                continue
            for process in tree:
                try:
                    part = part_of(process, root_part)
                    rss = process.memory_info().rss / 2**20
                    cpu = sum(process.cpu_times()[:2])
                except psutil.Error:
                    continue
                known = self._cpu.get(process.pid)
                start = known[1] if known else (cpu if not self.first else 0.0)
                self._cpu[process.pid] = (part, start, cpu)
                sums[part] = sums.get(part, 0.0) + rss
                self.largest[part] = max(self.largest.get(part, 0.0), rss)
                self.pids.setdefault(part, set()).add(process.pid)
        for part, total in sums.items():
            self.first.setdefault(part, total)
            self.peak[part] = max(self.peak.get(part, 0.0), total)

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_S)

    @contextmanager
    def running(self) -> Iterator[MemorySampler]:
        thread = threading.Thread(target=self.run, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


# The load (a process of its own) --------------------------------------------------------


def load_child(spec: str) -> None:
    """One (mode, round)'s load, from JSON `spec`; prints its figures as JSON."""
    import asyncio

    print(json.dumps(asyncio.run(_load(json.loads(spec)))), flush=True)


async def _load(spec: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 - one scenario
    import asyncio

    import aiohttp
    import numpy as np

    from trainers.architecture import to_model_input
    from trainers.data import load_dataset

    x = to_model_input(load_dataset("digits").test.x[:64], "mlp")
    bodies = [json.dumps({"instances": x[i : i + 1].tolist()}).encode() for i in range(len(x))]
    predict = f"{spec['rest']}/v1/models/{MODEL}:predict"
    json_type = {"Content-Type": "application/json"}
    pinned = {**json_type, "X-Backend": spec["arm"]}
    latencies: list[float] = []
    counts = {"errors": 0, "analyses": 0, "stale": 0, "admin_errors": 0, "fed": 0}
    admin_s: list[float] = []

    async def client(session: aiohttp.ClientSession, k: int, until: float, keep: bool) -> None:
        i = k
        while time.perf_counter() < until:
            started = time.perf_counter()
            async with session.post(predict, data=bodies[i % len(bodies)], headers=pinned) as r:
                await r.read()
                ok = r.status == 200
            if keep and ok:
                latencies.append(time.perf_counter() - started)
            elif keep:
                counts["errors"] += 1
            i += 1

    async def feed(session: aiohttp.ClientSession, until: float) -> None:
        period, n = 1.0 / spec["feed_rps"], 0
        while time.perf_counter() < until:
            headers = {**json_type, "X-Routing-Key": f"feed-{spec['run']}-{n}"}
            async with session.post(predict, data=bodies[n % len(bodies)], headers=headers) as r:
                await r.read()
                counts["fed"] += r.status == 200
            n += 1
            await asyncio.sleep(period)

    async def admin(session: aiohttp.ClientSession, until: float) -> None:
        url = f"{spec['rest']}/admin/experiments/{EXPERIMENT}"
        auth = {"Authorization": f"Bearer {spec['token']}"}
        while time.perf_counter() < until:
            started = time.perf_counter()
            async with session.get(url, headers=auth) as r:
                body = await r.read()
                if r.status != 200:
                    counts["admin_errors"] += 1
                    print(f"  admin read: {r.status} {body[:200]!r}", file=sys.stderr)
                    continue
            admin_s.append(time.perf_counter() - started)
            counts["analyses"] += 1
            counts["stale"] += bool(json.loads(body).get("stale"))

    connector = aiohttp.TCPConnector(limit=spec["concurrency"] + 4, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm = time.perf_counter() + spec["warmup_s"]
        await asyncio.gather(*(client(session, k, warm, False) for k in range(spec["concurrency"])))
        started = time.perf_counter()
        until = started + spec["seconds"]
        feeding = [asyncio.create_task(feed(session, until))] if spec["feed_rps"] > 0 else []
        reading = [asyncio.create_task(admin(session, until))] if spec["mode"] == "analysis" else []
        await asyncio.gather(*(client(session, k, until, True) for k in range(spec["concurrency"])))
        seconds = time.perf_counter() - started  # the measured clients' window only
        for task in feeding:
            task.cancel()
        # The admin read in flight ends (it started in the window: it counts).
        ended = await asyncio.gather(*reading, return_exceptions=True)
        counts["admin_errors"] += sum(isinstance(end, Exception) for end in ended)
        await asyncio.gather(*feeding, return_exceptions=True)
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "admin_mean_s": float(np.mean(admin_s)) if admin_s else float("nan"),
        **counts,
    }


# One run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    backends: Backends
    store: Path
    folder: Path
    database: SqliteDatabase | PostgresDatabase
    workers: int
    load: dict[str, Any]  # seconds, warmup_s, concurrency, arm, feed_rps

    @property
    def backend_pids(self) -> dict[int, str]:
        """The backends' processes (their whole process groups: TorchServe's launcher
        script has ended, its JVM and Python workers run on)."""
        from backends.process import group_members

        tf, torch = self.backends.tensorflow.pid, self.backends.pytorch.pid
        return {
            **{pid: "tfserving" for pid in [tf, *group_members(tf)]},
            **{pid: "torchserve" for pid in [torch, *group_members(torch)]},
        }


def run_once(setup: Setup, mode: str, run: int) -> dict[str, Any]:
    """A fresh copy of the seeded database, a fresh gateway on it, the load; figures."""
    name = f"run{run}_{mode}"
    with ExitStack() as stack:
        url = stack.enter_context(setup.database.copy(name))
        run_dir = setup.folder / name
        document = gateway_document(
            setup.backends, setup.store, run_dir, setup.workers, url, mode in ROLLOUT_MODES
        )
        gateway = start_gateway(document, run_dir, stack)
        roots = {**setup.backend_pids, gateway.pid: "gateway"}
        roots.update({pid: "postgres" for pid in setup.database.roots()})
        spec = {**setup.load, "mode": mode, "rest": gateway.rest, "token": gateway.admin_token}
        spec["run"] = run
        code = f"from {MODULE} import load_child; load_child({json.dumps(spec)!r})"
        with MemorySampler(roots).running() as memory:
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
        if done.returncode != 0:
            raise RuntimeError(f"the load failed ({done.returncode}):\n{done.stderr[-3000:]}")
        for line in done.stderr.splitlines():
            if line.startswith("  admin read:"):
                print(line, flush=True)  # why an admin read was not a 200
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        if mode in ROLLOUT_MODES:
            figures["rollout"] = _rollout_steps(gateway)
        shutil.rmtree(run_dir / "data", ignore_errors=True)
    figures["rss_peak"] = memory.peak
    figures["rss_first"] = memory.first
    figures["rss_largest"] = memory.largest
    figures["processes"] = {part: len(pids) for part, pids in memory.pids.items()}
    figures["cpu_s"] = memory.cpu_s
    return figures


def _rollout_steps(gateway: Gateway) -> list[str]:
    """The rollout's events at the end (the seeded step 0 only, if it held as meant)."""
    import httpx

    reply = httpx.get(
        f"{gateway.rest}/admin/experiments/{EXPERIMENT}",
        headers={"Authorization": f"Bearer {gateway.admin_token}"},
        timeout=600,
    )
    if reply.status_code != 200:
        return [f"unread ({reply.status_code})"]
    return [
        f"{e['details'].get('kind')}:{e['details'].get('step')}" for e in reply.json()["rollout"]
    ]


# Report ---------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str, part: str | None = None) -> float:
    values = [run[key].get(part, 0.0) if part else run[key] for run in runs]
    return float(statistics.median(values))


def report(results: dict[str, list[dict[str, Any]]], rows: int, setup: Setup) -> list[str]:
    """The table (medians over rounds), the processes' peak RSS, and the one-sentence answer."""
    off, on = results["off"], results["analysis"]
    base_rps, base_p99 = _median(off, "rps"), _median(off, "p99_ms")
    lines = [
        f"| mode ({rows:,} rows, {setup.database.__class__.__name__[:-8].lower()}, "
        f"{setup.workers} worker(s), {setup.load['concurrency']} clients) | req/s | p50 ms "
        "| p99 ms | errors | req/s ratio | p99 ratio | analyses | stale | admin errors "
        "| admin read s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, runs in results.items():
        lines.append(
            f"| {mode} | {_median(runs, 'rps'):.0f} | {_median(runs, 'p50_ms'):.2f} | "
            f"{_median(runs, 'p99_ms'):.2f} | {sum(r['errors'] for r in runs)} | "
            f"{_median(runs, 'rps') / base_rps:.2f} | {_median(runs, 'p99_ms') / base_p99:.2f} | "
            f"{sum(r['analyses'] for r in runs)} | {sum(r['stale'] for r in runs)} | "
            f"{sum(r['admin_errors'] for r in runs)} | "
            f"{_median(runs, 'admin_mean_s'):.2f} |".replace("nan", "-")
        )
    parts = sorted({part for run in off + on for part in run["rss_peak"]})
    lines += ["", "| peak RSS MiB (sum over the part's processes; largest one), CPU s | "
              + " | ".join(results) + " | processes |",
              "|---|" + "---:|" * (len(results) + 1)]  # fmt: skip
    for part in parts:
        cells = [
            f"{_median(results[m], 'rss_peak', part):.0f} "
            f"({_median(results[m], 'rss_largest', part):.0f}), "
            f"{_median(results[m], 'cpu_s', part):.1f} s"
            for m in results
        ]
        count = max(r["processes"].get(part, 0) for r in off + on)
        lines.append(f"| {part} | {' | '.join(cells)} | {count} |")
    rps = _median(on, "rps") / base_rps
    p99 = _median(on, "p99_ms") / base_p99
    growth = _median(on, "rss_peak", "gateway") - _median(off, "rss_peak", "gateway")
    meets = rps >= TARGETS["throughput"] and p99 <= TARGETS["p99"] and growth < TARGETS["rss_mib"]
    lines.append("")
    lines.append(
        f"throughput {rps:.2f} of off, p99 {p99:.2f}x, gateway RSS {growth:+.0f} MiB: "
        f"{'meets' if meets else 'misses'} the 0.9x / 1.3x / 100 MiB target"
    )
    moved = {tuple(r.get("rollout", [])) for r in on} - {("advance:0",)}
    if moved:
        lines.append(f"note: the rollout moved during a run ({sorted(moved)}): see the docstring")
    return lines


def main(
    rows: Annotated[int, typer.Option(help="rows in the experiment's log")] = 1_000_000,
    seconds: Annotated[float, typer.Option(help="measured load per (mode, round)")] = 20.0,
    rounds: Annotated[int, typer.Option(help="rounds (modes interleaved)")] = 2,
    concurrency: Annotated[int, typer.Option(help="pinned prediction clients")] = 8,
    workers: Annotated[int, typer.Option(help="gateway worker processes")] = 1,
    database: Annotated[str, typer.Option(help="sqlite or postgres")] = "sqlite",
    arm: Annotated[str, typer.Option(help="the arm the measured clients pin")] = "tensorflow",
    feed_rps: Annotated[float, typer.Option(help="unpinned requests/s into the experiment")] = 20.0,
    warmup: Annotated[float, typer.Option(help="unmeasured load before each run, s")] = 2.0,
    store: Annotated[
        Path, typer.Option("--model-store", help="trained models (digits-mlp trained if absent)")
    ] = Path("model_store"),
    keep: Annotated[Path | None, typer.Option(help="work folder kept (else a temp one)")] = None,
    modes: Annotated[str, typer.Option(help="off,analysis[,controller]")] = "off,analysis",
) -> None:
    """Gateway throughput, p99 and RSS with and without analyses, on the real stack."""
    if database not in ("sqlite", "postgres"):
        raise typer.BadParameter("--database: sqlite or postgres")
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    if "off" not in chosen or "analysis" not in chosen or set(chosen) - set(MODES):
        raise typer.BadParameter("--modes: off and analysis, and optionally controller")
    folder = (keep or Path(tempfile.mkdtemp(prefix="analysis-stack-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    load = {"seconds": seconds, "warmup_s": warmup, "concurrency": concurrency, "arm": arm,
            "feed_rps": feed_rps}  # fmt: skip
    try:
        with ExitStack() as stack:
            db = _database(database, folder, stack)
            started = time.perf_counter()
            say(f"seeding {rows:,} rows of {EXPERIMENT} ({database})")
            seed_database(db.url, rows)
            say(f"seeded in {time.perf_counter() - started:.0f} s; starting the backends")
            models = model_store(store)
            backends = start_backends(models, folder / "stack", stack)
            setup = Setup(backends, models, folder, db, workers, load)
            results = _rounds(setup, rounds, chosen)
            say("")
            for line in report(results, rows, setup):
                say(line)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _database(kind: str, folder: Path, stack: ExitStack) -> SqliteDatabase | PostgresDatabase:
    if kind == "sqlite":
        return SqliteDatabase(folder)
    from tests.integration.conftest import throwaway_postgres

    say("starting a throwaway PostgreSQL cluster")
    return PostgresDatabase(stack.enter_context(throwaway_postgres()))


def _rounds(setup: Setup, rounds: int, modes: list[str]) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    run = 0
    for r in range(rounds):
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            run += 1
            say(f"round {r + 1}/{rounds}: {mode} ({setup.load['seconds']:g} s)")
            figures = _run_reported(setup, mode, run)
            results[mode].append(figures)
    return results


def _run_reported(setup: Setup, mode: str, run: int) -> dict[str, Any]:
    figures = run_once(setup, mode, run)
    gateway = figures["rss_peak"].get("gateway", 0.0)
    analyst = figures["rss_peak"].get("analyst", 0.0)
    say(
        f"  {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.2f} ms, p99 "
        f"{figures['p99_ms']:.2f} ms, {figures['errors']} errors, {figures['analyses']} analyses"
        f" ({figures['stale']} stale), fed {figures['fed']}; gateway RSS peak {gateway:.0f} MiB,"
        f" analyst {analyst:.0f} MiB"
    )
    return figures


if __name__ == "__main__":
    typer.run(main)
