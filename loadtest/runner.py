"""`python -m loadtest`: run the sweep, write the report, print its path and headline."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtest.environment import capture, model_quality
from loadtest.report import build as report_mod
from loadtest.report.contents import Report
from loadtest.report.tables import HeadlineRow, headline_cells
from loadtest.sweep import Progress as ProgressFn
from loadtest.sweep import SweepOptions, SweepRun, run_sweep

REPO = Path(__file__).resolve().parent.parent


def new_report_dir(reports: Path) -> Path:
    path = reports / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=False)
    return path


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("preparing", total=None)

        def update(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done, total=total)

        yield update


def sweep_and_report(
    options: SweepOptions,
    out_dir: Path,
    fixed: int | None,
    console: Console,
    verdict_route: str = "direct",
) -> Path:
    """Run the sweep into `out_dir`, write meta.json and the report; return index.html.
    `verdict_route` ("direct" or "gateway"): which calls the framework verdict comes from."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with progress_bar(console) as update:
        run = run_sweep(options, out_dir, update)
    meta = _meta(options, run, started, fixed, verdict_route)
    (out_dir / "raw" / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    built = report_mod.build(out_dir)
    print_headline(console, built)
    return out_dir / "index.html"


def _meta(
    options: SweepOptions,
    run: SweepRun,
    started: str,
    fixed: int | None,
    verdict_route: str = "direct",
) -> dict[str, Any]:
    return {
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "fixed_concurrency": fixed,
        "slo_p99_ms": options.slo_ms or None,
        "environment": capture(run.state, REPO),
        "quality": model_quality(options.model_store, options.models),
        "backend_settings": run.settings,
        "processes": run.processes,
        "verdict_route": verdict_route,
        "skipped": run.skipped,
        "pids": {k: v["pid"] for k, v in run.state.items() if isinstance(v, dict) and v.get("pid")},
        "locust": {
            "users": "closed loop: one request in flight per user, no wait time; open loop: "
            "requests at scheduled times, at most max_in_flight at once, late ones dropped",
            "arrival": options.arrival if options.rates else "closed",
            "rates": list(options.rates),
            "max_in_flight": options.max_in_flight,
            "user_class": "FastHttpUser (REST); loadtest.users.grpc_users (gRPC)",
            "concurrency": list(options.concurrency),
            "repeats": options.repeats,
            "processes": options.workers,
            "timing": asdict(options.timing),
            "cpu_pinning": run.pinning.describe(),
            "models": list(options.models),
            "protocols": list(options.protocols),
            "targets": list(options.targets),
        },
    }


# headline column index -> console header; the first set fits 80 columns, the second 100
NARROW_COLUMNS = {2: "target", 4: "best req/s", 6: "p50 ms", 7: "p99 ms", 13: "req/s diff"}
WIDE_COLUMNS = {
    2: "target",
    4: "best req/s",
    5: "at",
    6: "p50 ms",
    7: "p99 ms",
    8: "p99 corr.",
    12: "dropped",
    13: "req/s diff",
}
WIDE_FROM = 100  # terminal columns


def console_columns(width: int) -> dict[int, str]:
    """The headline's columns for a terminal `width` wide: names are never cut, so a narrow
    terminal gets fewer columns (the rest are in the report)."""
    return WIDE_COLUMNS if width >= WIDE_FROM else NARROW_COLUMNS


def _short_confidence(text: str) -> str:
    """`high (p=0.003, df=3.9)` -> `high p=0.003`; `untested, 1 run` -> `1 run`."""
    if text.startswith("untested, "):
        return text.removeprefix("untested, ")
    return text.split(",")[0].replace(" (", " ")


def headline_table(rows: list[HeadlineRow], width: int, title: str) -> Table:
    """One (model, protocol)'s headline rows as a rich table that fits `width` columns."""
    columns = console_columns(width)
    table = Table(title=title, title_justify="left", pad_edge=False)
    for index, header in columns.items():
        table.add_column(header, justify="left" if index == 2 else "right", no_wrap=index == 2)
    for row in rows:
        cells = headline_cells(row)
        cells[13] = _short_confidence(cells[13])
        table.add_row(*(cells[i] for i in columns))
    return table


def print_headline(console: Console, built: Report) -> None:
    """The headline in the terminal, one table per model and protocol (every target's name
    in full at 80 columns and up), then the answer."""
    console.print(
        f"headline (★ better of the pair where a difference is shown; p50/p99 at "
        f"{built.fixed_load}; more in the report)",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    for key in dict.fromkeys((r.model, r.protocol) for r in built.headline):
        mine = [r for r in built.headline if (r.model, r.protocol) == key]
        console.print(headline_table(mine, console.width, f"{key[0]}, {key[1].upper()}"))
    for line in built.sentences:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
