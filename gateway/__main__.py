"""`python -m gateway --config gateway.yaml`: run the gateway (see `gateway.processes.workers`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command()
def main(
    config: Annotated[Path | None, typer.Option(help="gateway YAML file")] = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (settings.workers)")] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="where workers.json and the workers' metric files go")
    ] = None,
    log_level: str = "warning",
) -> None:
    """Serve the REST ingress (and gRPC when configured) until SIGTERM."""
    from gateway.processes.workers import serve
    from gateway.settings import load_settings

    given = {"host": host, "port": port, "workers": workers}
    settings = load_settings(config, **{k: v for k, v in given.items() if v is not None})
    raise typer.Exit(serve(settings, run_dir, log_level))


if __name__ == "__main__":
    cli()
