"""Bring the serving stack up and down: both backends, tracked by pid files under a run dir.

`run_dir/state.json` records the addresses of what runs (`dualserve.run_state.RunState`);
the load tests, benchmarks and tests read it (through `read_state`) instead of guessing
ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.oip.launcher import oip_status, pt2_models, start_oip, stop_oip
from backends.tfserving.commandline import TFServingSettings
from backends.tfserving.launcher import start_tfserving, stop_tfserving, tfserving_status
from backends.torchserve.config import TorchServeSettings
from backends.torchserve.launcher import start_torchserve, stop_torchserve, torchserve_status
from dualserve.registrar_process import registrar_running, start_registrar, stop_registrar
from dualserve.run_state import (
    STATE_FILE,
    GatewayState,
    OipState,
    PytorchState,
    RunState,
    StackStatus,
    TensorflowState,
    read_state,
    write_state,
)
from gateway.processes.launcher import (
    GatewayEndpoints,
    gateway_running,
    gateway_workers,
    start_gateway,
    stop_gateway,
)
from gateway.settings import ServerKind

__all__ = ["StackPaths", "down", "read_state", "status", "up"]

TF_SETTINGS = TFServingSettings(num_versions=2)
TORCH_SETTINGS = TorchServeSettings(enable_model_api=True)


@dataclass(frozen=True)
class StackPaths:
    """Where the stack reads models from and keeps its run-time files."""

    model_store: Path
    run_dir: Path

    @property
    def tfserving_dir(self) -> Path:
        return self.run_dir / "tfserving"

    @property
    def torchserve_dir(self) -> Path:
        return self.run_dir / "torchserve"

    @property
    def oip_dir(self) -> Path:
        return self.run_dir / "oip"

    @property
    def gateway_dir(self) -> Path:
        return self.run_dir / "gateway"

    @property
    def registrar_dir(self) -> Path:
        return self.run_dir / "registrar"

    @property
    def state_file(self) -> Path:
        return self.run_dir / STATE_FILE


def up(
    paths: StackPaths,
    timeout: float = 180.0,
    gateway_workers: int = 1,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
    pytorch_server: ServerKind = "torchserve",
    capture: Mapping[str, float] | None = None,
) -> RunState:
    """Start both backends in parallel, then the gateway (`gateway_workers` processes)
    in front of them; wait until every model is ready; write and return `state.json`.

    Where the store holds `.pt2` exports, the bundled OIP server (`backends/oip/`) starts
    beside them (`state.oip`); `pytorch_server="oip"` makes the gateway's pytorch arm call
    it instead of TorchServe (an error when there is nothing for it to serve).

    `version_labels` (model -> label -> version, none by default) go into TF Serving's
    model config and the gateway's config alike: the one source of both. `capture` (model
    -> share, none by default) turns the gateway's capture on (`run/gateway/capture/`).

    New versions land while it runs: TF Serving keeps the 2 newest version directories
    (`latest { num_versions: 2 }`, so the routed one stays loaded while the next lands),
    TorchServe's model API is on, and the registrar (`dualserve.registrar`) registers each
    version TF Serving serves with TorchServe.

    If anything fails, whatever did start is stopped again, so a failed `up` leaves
    nothing running.
    """
    store = paths.model_store.resolve()
    with_oip = pytorch_server == "oip" or bool(pt2_models(store))
    with ThreadPoolExecutor(max_workers=3) as pool:
        tf_future = pool.submit(
            start_tfserving, store, paths.tfserving_dir, TF_SETTINGS, None, timeout, version_labels
        )
        torch_future = pool.submit(
            start_torchserve, store, paths.torchserve_dir, TORCH_SETTINGS, None, timeout
        )
        oip_future = (
            pool.submit(start_oip, store, paths.oip_dir, None, timeout) if with_oip else None
        )
        futures = [f for f in (tf_future, torch_future, oip_future) if f is not None]
        errors = [f.exception() for f in futures]
    failures = [e for e in errors if e is not None]
    if failures:
        down(paths)
        raise failures[0]
    tf, torch = _tensorflow(vars(tf_future.result())), _pytorch(vars(torch_future.result()))
    oip = _oip(vars(oip_future.result())) if oip_future is not None else None
    try:
        registrar = start_registrar(store, paths.run_dir, paths.registrar_dir)
        gateway = start_gateway(
            tf, torch, store, paths.gateway_dir, timeout, gateway_workers, version_labels,
            oip=oip, pytorch_server=pytorch_server, capture=capture,
        )  # fmt: skip
    except Exception:
        down(paths)
        raise
    state = RunState(
        tensorflow=tf, pytorch=torch, gateway=_gateway(gateway), registrar=registrar, oip=oip
    )
    write_state(paths.run_dir, state)
    return state


def down(paths: StackPaths) -> list[str]:
    """Stop everything `up` started; returns the names of what was running."""
    stopped = []
    if stop_gateway(paths.gateway_dir):
        stopped.append("gateway")
    if stop_registrar(paths.registrar_dir):
        stopped.append("registrar")
    if stop_tfserving(paths.tfserving_dir):
        stopped.append("tensorflow")
    if stop_torchserve(paths.torchserve_dir):
        stopped.append("pytorch")
    if stop_oip(paths.oip_dir):
        stopped.append("oip")
    paths.state_file.unlink(missing_ok=True)
    return stopped


def status(paths: StackPaths) -> StackStatus:
    """What runs now (a part that does not run is None).

    Raises:
        RunStateError: the gateway runs but `state.json` is not what `up` writes.
    """
    tf, torch = tfserving_status(paths.tfserving_dir), torchserve_status(paths.torchserve_dir)
    oip = oip_status(paths.oip_dir)
    gateway = None
    if gateway_running(paths.gateway_dir) and paths.state_file.is_file():
        recorded = read_state(paths.run_dir).gateway
        # The workers as they are now: a dead one is replaced by a new pid.
        pids = tuple(gateway_workers(paths.gateway_dir))
        gateway = recorded.model_copy(update={"worker_pids": pids})
    return StackStatus(
        tensorflow=_tensorflow(tf) if tf else None,
        pytorch=_pytorch(torch["endpoints"]) if torch else None,
        gateway=gateway,
        registrar=registrar_running(paths.registrar_dir),
        oip=_oip(oip) if oip else None,
    )


def _tensorflow(tf: Mapping[str, Any]) -> TensorflowState:
    """From TF Serving's endpoints (`TFServingEndpoints`, or its status record)."""
    return TensorflowState(
        rest=tf["rest"],
        grpc=tf["grpc"],
        metrics=tf.get("metrics"),
        binary=tf.get("binary"),
        pid=tf.get("pid"),
    )


def _pytorch(torch: Mapping[str, Any]) -> PytorchState:
    """From TorchServe's endpoints (`TorchServeEndpoints`, or its saved record)."""
    return PytorchState(
        inference=torch["inference"],
        management=torch["management"],
        grpc=torch["grpc"],
        token_file=torch["token_file"],
        metrics=torch.get("metrics"),
        pid=torch.get("pid"),
    )


def _oip(oip: Mapping[str, Any]) -> OipState:
    """From the OIP server's endpoints (`OipEndpoints`, or its status record)."""
    return OipState(
        rest=oip["rest"], grpc=oip["grpc"], metrics=oip.get("metrics"), pid=oip.get("pid")
    )


def _gateway(gateway: GatewayEndpoints) -> GatewayState:
    return GatewayState(
        rest=gateway.rest,
        grpc=gateway.grpc or None,
        admin_token_file=Path(gateway.admin_token_file),
        config_file=Path(gateway.config_file),
        pid=gateway.pid,
        workers=gateway.workers,
        worker_pids=gateway.worker_pids,
    )
