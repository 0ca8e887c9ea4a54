"""`python -m benchmarks`: list the developer micro-benchmarks, or run them one after another.

    python -m benchmarks --list            # each benchmark, its question, its short command
    python -m benchmarks                   # run them all with short settings (minutes)
    python -m benchmarks --only grpc_handlers,log_handoff

Each runs in its own process (`python -m benchmarks.<name> <short settings>`), so one
that fails does not stop the rest; the exit status is 1 when any failed. The ones that
measure a running stack's backends are skipped, with a note, when `<run-dir>/state.json`
does not exist (`dualserve up` first); `benchmarks.gateway` starts a stack itself. The
short settings answer "did anything regress badly"; the README gives each one's full run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer


@dataclass(frozen=True)
class Bench:
    """One benchmark module: its question and the short arguments `python -m benchmarks`
    runs it with."""

    name: str
    question: str
    short: tuple[str, ...]
    needs_stack: bool = False
    takes_run_dir: bool = False

    def argv(self, run_dir: Path = Path("run")) -> list[str]:
        where = ("--run-dir", str(run_dir)) if self.takes_run_dir else ()
        return [sys.executable, "-m", f"benchmarks.{self.name}", *self.short, *where]


BENCHES = (
    Bench(
        "grpc_handlers",
        "CPU per call of the gRPC ingress's own handlers, in process",
        ("--calls", "2000", "--repeats", "3"),
    ),
    Bench(
        "grpc_floor",
        "what grpc.aio and uvicorn cost per call when both do nothing",
        ("--duration", "1", "--rounds", "1"),
    ),
    Bench(
        "upstream_clients",
        "which HTTP client forwards to the REST backends fastest",
        ("--requests", "600", "--concurrency", "16"),
    ),
    Bench(
        "experiments.prediction_log",
        "does the prediction log cost the reply anything (off, on, slow store)",
        ("--requests", "600", "--rounds", "1"),
    ),
    Bench(
        "tracing",
        "what tracing costs the gateway: off, on and sampled, on and always_off",
        ("--duration", "1", "--rounds", "1", "--concurrency", "16"),
    ),
    Bench(
        "experiments.capture",
        "does the capture cost throughput (off, every request, a stalled writer)",
        ("--requests", "600", "--rounds", "1"),
    ),
    Bench(
        "experiments.log_handoff",
        "what the prediction log's writer costs a saturated event loop",
        ("--requests", "1500", "--rounds", "3"),
    ),
    Bench(
        "transports",
        "gRPC or REST to each backend kind: the upstream client's cost",
        ("--requests", "300", "--rounds", "1"),
        needs_stack=True,
        takes_run_dir=True,
    ),
    Bench(
        "servers",
        "the gateway and the floor proxy under uvicorn and granian",
        ("--duration", "1", "--rounds", "1", "--concurrency", "16"),
        needs_stack=True,
        takes_run_dir=True,
    ),
    Bench(
        "experiments.analysis_scale",
        "an experiment's analysis at volume: time and peak RSS, rows against aggregates",
        ("--rows", "10000,100000"),
    ),
    Bench(
        "experiments.analysis_load",
        "what reading an experiment's analysis costs the serving process",
        ("--rows", "10000", "--seconds", "3", "--rounds", "1"),
    ),
    Bench(
        "experiments.analysis_stack",
        "issue 23 on the real stack: gateway req/s, p99, RSS with analyses and rollouts",
        ("--rows", "10000", "--seconds", "3", "--rounds", "1"),
    ),
    Bench(
        "gateway",
        "the gateway's throughput, p50 and CPU per request as ratios to the floor proxy",
        ("--duration", "1", "--rounds", "1", "--workers", "1", "--transport", "default"),
        takes_run_dir=True,
    ),
)


def listing() -> list[str]:
    """One line per benchmark: name, question, short command."""
    return [f"{b.name}: {b.question}\n    {' '.join(b.argv()[1:])}" for b in BENCHES]


def chosen(only: str) -> list[Bench]:
    """The benchmarks named in `only` (comma-separated), or all of them for "".

    Raises:
        typer.BadParameter: naming an unknown benchmark.
    """
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {b.name: b for b in BENCHES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise typer.BadParameter(f"unknown: {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names] if names else list(BENCHES)


def main(
    list_only: Annotated[bool, typer.Option("--list", help="list them and stop")] = False,
    only: Annotated[str, typer.Option(help="comma-separated names; default all")] = "",
    run_dir: Annotated[Path, typer.Option(help="a running stack's run dir")] = Path("run"),
    timeout: Annotated[float, typer.Option(help="seconds each one may run")] = 600.0,
) -> None:
    """Run the chosen benchmarks one after another with short settings."""
    if list_only:
        print("\n".join(listing()))
        return
    failed = []
    for bench in chosen(only):
        if bench.needs_stack and not (run_dir / "state.json").is_file():
            print(f"== {bench.name}: skipped, no running stack ({run_dir}/state.json)")
            continue
        print(f"== {bench.name}: {bench.question}", flush=True)
        done = subprocess.run(bench.argv(run_dir), timeout=timeout, check=False)
        if done.returncode != 0:
            failed.append(bench.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
