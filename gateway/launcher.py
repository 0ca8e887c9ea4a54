"""Start the gateway process in front of running backends (used by `dualserve up`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from backends.process import LOOPBACK, ManagedProcess, free_port, start, stop, wait_until

NAME = "gateway"


@dataclass(frozen=True)
class GatewayEndpoints:
    rest: str
    grpc: str | None
    admin_token_file: str
    config_file: str
    pid: int


def gateway_config(
    state: dict[str, Any], model_store: Path, run_dir: Path, port: int, grpc_port: int | None = None
) -> dict[str, Any]:
    """The local default: each backend over its faster transport (TF Serving REST,
    TorchServe gRPC: see `gateway.settings`), every model 50/50 sticky with failover and
    client pinning allowed (the `ModelPolicy` defaults); a gRPC ingress on `grpc_port`."""
    tf, torch = state["tensorflow"], state["pytorch"]
    return {
        "host": LOOPBACK,
        "port": port,
        "grpc_port": grpc_port,
        "model_store": str(Path(model_store).resolve()),
        "tensorflow": {"transport": "rest", "grpc": [tf["grpc"]], "rest": [tf["rest"]]},
        "pytorch": {
            "transport": "grpc",
            "grpc": [torch["grpc"]],
            "rest": [torch["inference"]],
            "token_file": torch["token_file"],
        },
        "auth": {"admin_token_file": str(run_dir / "admin_token")},
    }


def start_gateway(
    state: dict[str, Any], model_store: Path, run_dir: Path, timeout: float = 60.0
) -> GatewayEndpoints:
    """Write run_dir/gateway.yaml, start `python -m gateway`, wait for /readyz (the
    gRPC ingress is started before the REST one answers)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    grpc_port = next(p for p in iter(free_port, None) if p != port)
    config = gateway_config(state, model_store, run_dir, port, grpc_port)
    config_file = run_dir / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "gateway", "--config", str(config_file)]
    proc = start(NAME, command, run_dir, cwd=run_dir)
    rest = f"http://{LOOPBACK}:{port}"
    wait_until(proc, lambda: httpx.get(f"{rest}/readyz", timeout=2).status_code == 200, timeout)
    return GatewayEndpoints(
        rest=rest,
        grpc=f"{LOOPBACK}:{grpc_port}",
        admin_token_file=str(run_dir / "admin_token"),
        config_file=str(config_file),
        pid=proc.pid() or 0,
    )


def _process(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def stop_gateway(run_dir: Path) -> bool:
    return stop(_process(run_dir), timeout=10)


def gateway_running(run_dir: Path) -> int | None:
    return _process(run_dir).pid()
