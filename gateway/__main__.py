"""`python -m gateway --config gateway.yaml`: run the gateway with uvicorn."""

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
    log_level: str = "warning",
) -> None:
    """Serve the REST ingress (and gRPC when configured) until SIGTERM."""
    import uvicorn

    from gateway.app import create_app
    from gateway.settings import load_settings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = load_settings(config, **overrides)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain.grace_s),
    )


if __name__ == "__main__":
    cli()
