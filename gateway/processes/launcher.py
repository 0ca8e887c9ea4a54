"""Start the gateway process in front of running backends (used by `dualserve up`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from backends.process import LOOPBACK, ManagedProcess, start, stop, wait_until
from gateway.edge.security_settings import AuthSettings
from gateway.processes.workers import WORKERS_FILE, read_workers
from gateway.settings import (
    GatewaySettings,
    OipSettings,
    ServerKind,
    TFServingSettings,
    TorchServeSettings,
    write_settings,
)

NAME = "gateway"
CONFIG_FILE = "gateway.yaml"


class TFServingAddresses(Protocol):
    """Where TF Serving answers: `dualserve.run_state.TensorflowState` (read from
    `run/state.json`), or `backends.tfserving.launcher.TFServingEndpoints`."""

    @property
    def rest(self) -> str: ...
    @property
    def grpc(self) -> str: ...


class TorchServeAddresses(Protocol):
    """Where TorchServe answers: `dualserve.run_state.PytorchState`, or
    `backends.torchserve.launcher.TorchServeEndpoints`."""

    @property
    def inference(self) -> str: ...
    @property
    def grpc(self) -> str: ...
    @property
    def management(self) -> str: ...
    @property
    def token_file(self) -> str | os.PathLike[str]: ...


class OipAddresses(Protocol):
    """Where an OIP server answers: `dualserve.run_state.OipState`, or
    `backends.oip.launcher.OipEndpoints`."""

    @property
    def rest(self) -> str: ...
    @property
    def grpc(self) -> str: ...


@dataclass(frozen=True)
class GatewayEndpoints:
    rest: str
    grpc: str | None
    admin_token_file: str
    config_file: str
    pid: int
    """The supervisor's pid when there are several workers, else the one process's."""
    workers: int
    worker_pids: tuple[int, ...]


def gateway_config(
    tensorflow: TFServingAddresses,
    pytorch: TorchServeAddresses,
    model_store: Path,
    run_dir: Path,
    port: int,
    grpc_port: int | None = None,
    workers: int = 1,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
    config_file: Path | None = None,
    oip: OipAddresses | None = None,
    pytorch_server: ServerKind = "torchserve",
    capture: Mapping[str, float] | None = None,
) -> GatewaySettings:
    """The local default: each backend over its faster transport (REST for both: see
    `gateway.settings`), every model 50/50 sticky with failover and
    client pinning allowed (the `ModelPolicy` defaults); a gRPC ingress on `grpc_port`;
    `workers` processes serving both ports; the TF Serving `version_labels` the TF server
    was given (none by default); `capture` (model -> share) turns the capture on for
    those models (off by default).

    Built without the environment (`GatewaySettings.model_validate`): the fields set here
    are what `gateway.settings.write_settings` writes, and the gateway process applies its
    own `DUALSERVE_*` variables when it loads the file. `config_file` is where it will be
    written (several `workers` need one: they share the database beside it). With `oip`
    (the bundled OIP server's addresses) the `oip` block is filled (gRPC, its default),
    and `pytorch_server="oip"` routes the pytorch arm there.

    Raises:
        pydantic.ValidationError: a field the gateway would refuse, named.
    """
    labels = {model: dict(pairs) for model, pairs in (version_labels or {}).items()}
    fields = {
        "host": LOOPBACK,
        "port": port,
        "grpc_port": grpc_port,
        "workers": workers,
        "model_store": Path(model_store).resolve(),
        "tensorflow": TFServingSettings(
            transport="rest", grpc=[tensorflow.grpc], rest=[tensorflow.rest]
        ),
        "pytorch": TorchServeSettings(
            transport="rest",
            grpc=[pytorch.grpc],
            rest=[pytorch.inference],
            management=[pytorch.management],
            token_file=Path(pytorch.token_file),
        ),
        "auth": AuthSettings(admin_token_file=run_dir / "admin_token"),
        "config_file": config_file,
    }
    if oip is not None:
        fields["oip"] = OipSettings(grpc=[oip.grpc], rest=[oip.rest])
    if pytorch_server != "torchserve":
        fields["servers"] = {"pytorch": pytorch_server}
    if labels:
        fields["version_labels"] = labels
    if capture:
        fields["capture"] = {"models": dict(capture)}
    return GatewaySettings.model_validate(fields)


def start_gateway(
    tensorflow: TFServingAddresses,
    pytorch: TorchServeAddresses,
    model_store: Path,
    run_dir: Path,
    timeout: float = 60.0,
    workers: int = 1,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
    oip: OipAddresses | None = None,
    pytorch_server: ServerKind = "torchserve",
    capture: Mapping[str, float] | None = None,
) -> GatewayEndpoints:
    """Write run_dir/gateway.yaml, start `python -m gateway`, wait until every worker
    serves (`workers.json` lists them all) and /readyz answers 200 (each worker starts its
    gRPC ingress before its REST one answers)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Port 0: the gateway binds its own ports (no window for another process to take a
    # port chosen here) and names them in workers.json.
    config_file = run_dir / CONFIG_FILE
    config = gateway_config(
        tensorflow, pytorch, model_store, run_dir, 0, 0, workers, version_labels, config_file,
        oip, pytorch_server, capture,
    )  # fmt: skip
    write_settings(config, config_file)
    (run_dir / WORKERS_FILE).unlink(missing_ok=True)  # a previous run's ports are not ours
    command = [sys.executable, "-m", "gateway", "--config", str(config_file)]
    proc = start(NAME, [*command, "--run-dir", str(run_dir)], run_dir, cwd=run_dir)

    def ready() -> bool:
        record = read_workers(run_dir)
        if record is None or len(gateway_workers(run_dir)) != workers:
            return False
        rest = f"http://{LOOPBACK}:{record['port']}"
        return httpx.get(f"{rest}/readyz", timeout=2).status_code == 200

    wait_until(proc, ready, timeout)
    record = read_workers(run_dir) or {}
    return GatewayEndpoints(
        rest=f"http://{LOOPBACK}:{record['port']}",
        grpc=f"{LOOPBACK}:{record['grpc_port']}",
        admin_token_file=str(run_dir / "admin_token"),
        config_file=str(config_file),
        pid=proc.pid() or 0,
        workers=workers,
        worker_pids=tuple(gateway_workers(run_dir)),
    )


def _process(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def stop_gateway(run_dir: Path) -> bool:
    return stop(_process(run_dir), timeout=10)


def gateway_running(run_dir: Path) -> int | None:
    return _process(run_dir).pid()


def gateway_workers(run_dir: Path) -> list[int]:
    """The pids of the running gateway's workers (its own pid when it is one process),
    from the `workers.json` it keeps; empty when it does not run."""
    pid = gateway_running(run_dir)
    record = read_workers(run_dir)
    if pid is None or record is None or record.get("supervisor") != pid:
        return []
    return [int(worker) for worker in record["workers"]]
