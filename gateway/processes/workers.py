"""The gateway's processes: one, or N workers behind one REST port and one gRPC port.

`workers: 1` serves the app in this process. With N > 1 this process becomes uvicorn's
`Multiprocess` supervisor (subclassed below): it binds the REST socket once and spawns N
workers that all accept on it; each worker's lifespan starts its own grpc.aio server on the
same gRPC port with `grpc.so_reuseport`, so the kernel spreads gRPC connections over them.
The supervisor replaces a worker that dies (uvicorn's own behaviour, checked every 0.5 s)
and stops the gateway with exit status 3 (uvicorn's STARTUP_FAILURE) when a worker cannot
start, so a broken config never restarts in a loop. It also

- empties the workers' metric folder (`PROMETHEUS_MULTIPROC_DIR`) before they start and
  marks a dead worker's live gauges dead, so `/metrics` in any worker sums every worker;
- keeps `workers.json` in the run folder: its own pid, every worker's, the bound ports.

Workers rebuild their settings from the same YAML file and environment: the supervisor puts
the config path, the bound host and ports and the worker count in the environment first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.settings import GatewaySettings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

WORKERS_FILE = "workers.json"
CONFIG_ENV = "DUALSERVE_GATEWAY_CONFIG"
"""The YAML file each worker loads its settings from (empty: none)."""
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
logger = logging.getLogger("uvicorn.error")


def serve(settings: GatewaySettings, run_dir: Path | None, log_level: str = "warning") -> int:
    """Serve REST (and gRPC when configured) until SIGTERM; returns the exit status.

    Args:
        settings: the gateway's settings; `settings.workers` processes serve them.
        run_dir: where `workers.json` and the workers' metric files go; None = no
            `workers.json`, metric files in a temporary folder.
        log_level: uvicorn's log level.
    """
    if settings.workers == 1:
        return _serve_one(settings, run_dir, log_level)
    return _serve_many(settings, run_dir, log_level)


def _serve_one(settings: GatewaySettings, run_dir: Path | None, log_level: str) -> int:
    """One process. The REST socket is bound here (port 0: any free port, no race), the
    gRPC ingress binds its own in the lifespan; `workers.json` names both once serving."""
    import uvicorn

    from gateway.app import create_app
    from gateway.processes.connections import DrainingServer, configure

    configure(settings.edge, settings.drain)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        **_uvicorn_options(log_level, settings.drain.grace_s),
    )
    rest_socket = config.bind_socket()
    server = DrainingServer(config)

    async def serve() -> None:
        serving = asyncio.create_task(server.serve(sockets=[rest_socket]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)  # uvicorn sets `started` after the lifespan's startup
        if server.started:
            port = rest_socket.getsockname()[1]
            _write_workers(run_dir, [os.getpid()], port, app.state.grpc_port)
        await serving

    # asyncio.run's loop_factory arrived in Python 3.12; asyncio.Runner (3.11) takes it.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())
    return 0


def _serve_many(settings: GatewaySettings, run_dir: Path | None, log_level: str) -> int:
    import uvicorn

    from gateway.processes.supervisor import Supervisor

    grpc_reservation = _reserve_port(settings.host) if settings.grpc_port == 0 else None
    grpc_port = grpc_reservation.getsockname()[1] if grpc_reservation else settings.grpc_port
    config = uvicorn.Config(
        "gateway.processes.workers:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        **_uvicorn_options(log_level, settings.drain.grace_s),
    )
    rest_socket = config.bind_socket()
    port = rest_socket.getsockname()[1]
    os.environ.update(_worker_env(settings, port, grpc_port))
    os.environ[METRICS_ENV] = str(_fresh_metrics_dir(run_dir))
    supervisor = Supervisor(
        config, [rest_socket], lambda pids: _write_workers(run_dir, pids, port, grpc_port)
    )
    supervisor.run()
    return supervisor.exit_status


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker: the app of the settings the supervisor resolved.

    A worker that cannot build it exits with STARTUP_FAILURE, which stops the supervisor
    instead of restarting the worker in a loop.
    """
    from uvicorn.config import STARTUP_FAILURE

    from gateway.app import create_app
    from gateway.processes.connections import configure

    config_file = os.environ.get(CONFIG_ENV)
    try:
        settings = load_settings(Path(config_file) if config_file else None)
        configure(settings.edge, settings.drain)
        return create_app(settings)
    except Exception as exc:
        logger.error("gateway worker %d cannot start: %s", os.getpid(), exc)
        sys.exit(STARTUP_FAILURE)


def _uvicorn_options(log_level: str, grace_s: float = 10.0) -> dict[str, Any]:
    return {
        "loop": "uvloop",
        # uvicorn's httptools protocol with bounds on heads and connections, and a drain
        # that resets nobody (gateway.processes.connections, issue 24)
        "http": "gateway.processes.connections:BoundedHttpToolsProtocol",
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": grace_s,  # drain.grace_s (gateway.edge.drain)
        # uvicorn's ProxyHeadersMiddleware rewrites the client address and scheme from
        # X-Forwarded-For/-Proto around every request (0.6 us and an ASGI layer each); nothing
        # in the gateway reads either (auth and rate limits go by API key, replies carry no
        # absolute URLs), so it is not installed.
        "proxy_headers": False,
        "server_header": False,  # `server: uvicorn` on every reply: bytes and a header check
    }


def _reserve_port(host: str) -> socket.socket:
    """A bound, never listening SO_REUSEPORT socket: the port stays ours while the workers
    bind it too (only listening sockets receive connections)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _worker_env(settings: GatewaySettings, port: int, grpc_port: int | None) -> dict[str, str]:
    env = {
        CONFIG_ENV: str(settings.config_file or ""),
        "DUALSERVE_HOST": settings.host,
        "DUALSERVE_PORT": str(port),
        "DUALSERVE_WORKERS": str(settings.workers),
    }
    if grpc_port is not None:
        env["DUALSERVE_GRPC_PORT"] = str(grpc_port)
    return env


def _fresh_metrics_dir(run_dir: Path | None) -> Path:
    """`PROMETHEUS_MULTIPROC_DIR` when set, else run_dir/prometheus, else a temporary
    folder; emptied of a previous run's files (prometheus_client's rule)."""
    given = os.environ.get(METRICS_ENV)
    if given:
        path = Path(given)
    elif run_dir is not None:
        path = run_dir / "prometheus"
    else:
        path = Path(tempfile.mkdtemp(prefix="dualserve-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


def _write_workers(run_dir: Path | None, pids: list[int], port: int, grpc_port: int | None) -> None:
    if run_dir is None:
        return
    record = {"supervisor": os.getpid(), "workers": pids, "port": port, "grpc_port": grpc_port}
    tmp = run_dir / f"{WORKERS_FILE}.tmp"
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, run_dir / WORKERS_FILE)


def read_workers(run_dir: Path) -> dict[str, Any] | None:
    """What `workers.json` says (written by `serve`), or None when there is none."""
    try:
        return dict(json.loads((run_dir / WORKERS_FILE).read_text()))
    except (OSError, ValueError):
        return None
