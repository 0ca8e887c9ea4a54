"""`python -m loadtest` (also `dualserve loadtest`): the Locust sweep and its report.

python -m loadtest [--models digits-mlp,digits-cnn] [--concurrency 1,4,16,64]
                   [--arrival poisson|constant --rate 100,400,1600] [--slo-p99-ms 50]
                   [--duration 10] [--repeats 3] [--protocols rest,grpc]
                   [--workers 2] [--pin-cpus auto] [--verdict-via direct|gateway]
python -m loadtest report reports/<timestamp>     # rebuild a report from its raw data
python -m loadtest compare reports/<a> reports/<b>  # two runs on one report, with verdicts
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def _console() -> Console:
    """A terminal's own width (the headline fits 80 columns and up without cutting a name);
    120 columns when piped (make, CI logs), or `COLUMNS` when set."""
    return Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@app.callback(invoke_without_command=True)
def sweep(
    ctx: typer.Context,
    models: Annotated[str, typer.Option(help="comma-separated models")] = "digits-mlp",
    concurrency: Annotated[
        str, typer.Option(help="comma-separated closed-loop user counts ('' for none)")
    ] = "1,16",
    rate: Annotated[
        str, typer.Option(help="comma-separated open-loop offered rates, requests/s")
    ] = "",
    arrival: Annotated[
        str, typer.Option(help="open-loop arrival: poisson or constant")
    ] = "poisson",
    max_in_flight: Annotated[
        int, typer.Option(help="open loop: most requests in flight (Locust users)")
    ] = 64,
    slo_p99_ms: Annotated[
        float, typer.Option(help="p99 latency objective for goodput and saturation (0: none)")
    ] = 0.0,
    protocols: Annotated[str, typer.Option(help="rest and/or grpc")] = "rest,grpc",
    targets: Annotated[str, typer.Option(help="comma-separated target names; default all")] = "",
    duration: Annotated[float, typer.Option(help="minimum measured seconds per cell")] = 5.0,
    cap: Annotated[
        float, typer.Option(help="maximum measured seconds per cell (0: 2x duration)")
    ] = 0.0,
    warmup: Annotated[float, typer.Option(help="unmeasured seconds at the start of a cell")] = 1.0,
    window: Annotated[float, typer.Option(help="stability window, seconds")] = 1.0,
    repeats: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 1,
    workers: Annotated[int, typer.Option(help="Locust processes per cell (distributed mode)")] = 1,
    pin_cpus: Annotated[
        str, typer.Option(help="none, auto or LOADGEN/SERVERS e.g. 3/0-2")
    ] = "none",
    fixed_concurrency: Annotated[
        int | None, typer.Option(help="c for the headline's p50/p99")
    ] = None,
    verdict_via: Annotated[
        str,
        typer.Option(help="the framework verdict from: direct calls, or the gateway's arms"),
    ] = "direct",
    model_store: Path = Path("model_store"),
    run_dir: Annotated[
        Path, typer.Option(help="the stack's run dir (a running stack is reused)")
    ] = Path("run"),
    reports: Annotated[Path, typer.Option(help="reports/<timestamp>/ goes here")] = Path("reports"),
    output: Annotated[Path | None, typer.Option(help="exact report dir instead")] = None,
    capture: Annotated[
        Path | None,
        typer.Option(help="a capture (dualserve up --capture) as the workload; REST only"),
    ] = None,
) -> None:
    """Bring the stack up (or use the running one), sweep, write the report, stop."""
    if ctx.invoked_subcommand is not None:
        return
    from loadtest.cells import Timing
    from loadtest.runner import new_report_dir, sweep_and_report
    from loadtest.sweep import SweepOptions
    from loadtest.targets import ALL_TARGETS
    from loadtest.users.openloop import ARRIVALS

    rates = tuple(float(r) for r in _csv(rate))
    levels = tuple(int(c) for c in _csv(concurrency))
    if arrival not in ARRIVALS:
        raise typer.BadParameter(f"must be one of {', '.join(ARRIVALS)}", param_hint="--arrival")
    if any(r <= 0 for r in rates) or max_in_flight < 1 or slo_p99_ms < 0:
        raise typer.BadParameter("rates, --max-in-flight and --slo-p99-ms must be positive")
    if verdict_via not in ("direct", "gateway"):
        raise typer.BadParameter("must be direct or gateway", param_hint="--verdict-via")
    if capture is not None and set(_csv(protocols)) != {"rest"}:
        raise typer.BadParameter("a capture workload is sent over REST: add --protocols rest")
    if not rates and not levels:
        raise typer.BadParameter("give --concurrency levels, --rate levels or both")
    timing = Timing(warmup_s=warmup, min_s=duration, cap_s=cap or 2 * duration, window_s=window)
    options = SweepOptions(
        models=_csv(models),
        concurrency=levels,
        rates=rates,
        arrival=arrival,
        max_in_flight=max_in_flight,
        slo_ms=slo_p99_ms,
        protocols=_csv(protocols),
        targets=_csv(targets) or ALL_TARGETS,
        repeats=repeats,
        timing=timing,
        workers=workers,
        pin_cpus=pin_cpus,
        model_store=model_store,
        run_dir=run_dir,
        capture=capture,
    )
    # a SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: nginx and the stack are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = output or new_report_dir(reports)
    out.mkdir(parents=True, exist_ok=True)
    console = _console()
    index = sweep_and_report(options, out, fixed_concurrency, console, verdict_via)
    console.print(f"report: {index}")


@app.command()
def report(report_dir: Path) -> None:
    """Rebuild index.html, report.md and summary.json from REPORT_DIR/raw."""
    from loadtest.report import build as report_mod
    from loadtest.runner import print_headline

    console = _console()
    print_headline(console, report_mod.build(report_dir))
    console.print(f"report: {report_dir / 'index.html'}")


@app.command()
def compare(
    run_a: Path,
    run_b: Path,
    output: Annotated[Path | None, typer.Option(help="report dir (default: next to RUN_B)")] = None,
) -> None:
    """Both runs on the same charts, per cell the difference with Welch's t-test and a
    verdict; writes OUTPUT/index.html, compare.md and compare.json."""
    from loadtest.compare.runs import build_comparison

    out = output or run_b.parent / f"compare-{run_a.name}-vs-{run_b.name}"
    console = _console()
    result = build_comparison(run_a, run_b, out)
    for line in result.summary_lines():
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    console.print(f"comparison: {out / 'index.html'}")


@app.command()
def screenshot(report_dir: Path, png: Path, height: int = 3000) -> None:
    """Save a PNG of REPORT_DIR/index.html as headless Chromium renders it."""
    from loadtest.report.browser import screenshot as shoot

    shoot(report_dir / "index.html", png, height=height)
    Console().print(f"screenshot: {png}")


if __name__ == "__main__":
    app()
