"""`dualserve`: bring the serving stack up and down, and say what runs.

Heavy imports (TensorFlow, torch) stay out of this module: `dualserve status` must
answer at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Serve one model from TensorFlow Serving and TorchServe, side by side.",
)

ModelStoreOption = Annotated[
    Path, typer.Option(envvar="DUALSERVE_MODEL_STORE", help="the trainers' model store")
]
RunDirOption = Annotated[
    Path, typer.Option(envvar="DUALSERVE_RUN_DIR", help="pid files, logs and state.json")
]


def _paths(model_store: Path, run_dir: Path) -> Any:
    from dualserve.stack import StackPaths

    return StackPaths(model_store=model_store, run_dir=run_dir.resolve())


@app.command()
def up(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 180.0,
) -> None:
    """Start both backends from the model store and wait until every model is ready."""
    from backends.process import LaunchError
    from dualserve import stack
    from trainers.errors import ManifestError

    console = Console()
    paths = _paths(model_store, run_dir)
    running = stack.status(paths)
    if running:
        console.print("already running (use `dualserve down` first):")
        _print_status(console, running)
        return
    try:
        with console.status("starting TF Serving and TorchServe, waiting for every model"):
            state = stack.up(paths, timeout=timeout)
    except (LaunchError, ManifestError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    _print_status(console, state)
    console.print(f"addresses written to {paths.state_file}")


@app.command()
def down(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
) -> None:
    """Stop everything `dualserve up` started (tracked by pid files)."""
    from dualserve import stack

    stopped = stack.down(_paths(model_store, run_dir))
    Console().print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    model_store: ModelStoreOption = Path("model_store"),
    run_dir: RunDirOption = Path("run"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Show what runs and where."""
    from dualserve import stack

    state = stack.status(_paths(model_store, run_dir))
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    console = Console()
    if not state:
        console.print("nothing is running (start it with `dualserve up`)")
        return
    _print_status(console, state)


def _print_status(console: Console, state: dict[str, Any]) -> None:
    table = Table(title="dualserve")
    for column in ("backend", "pid", "endpoint", "address"):
        table.add_column(column)
    for backend, fields in state.items():
        pid = str(fields.get("pid") or "")
        for key, value in fields.items():
            if key != "pid" and value is not None:
                table.add_row(backend, pid, key, str(value))
                backend, pid = "", ""
    console.print(table)


def main() -> None:
    app()
