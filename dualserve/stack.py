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

from backends.tfserving.commandline import TFServingSettings
from backends.tfserving.launcher import start_tfserving, stop_tfserving, tfserving_status
from backends.torchserve.config import TorchServeSettings
from backends.torchserve.launcher import start_torchserve, stop_torchserve, torchserve_status
from dualserve.registrar_process import registrar_running, start_registrar, stop_registrar
from dualserve.run_state import (
    STATE_FILE,
    GatewayState,
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
    capture: Mapping[str, float] | None = None,
) -> RunState:
    """Start both backends in parallel, then the gateway (`gateway_workers` processes)
    in front of them; wait until every model is ready; write and return `state.json`.

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
    with ThreadPoolExecutor(max_workers=2) as pool:
        tf_future = pool.submit(
            start_tfserving, store, paths.tfserving_dir, TF_SETTINGS, None, timeout, version_labels
        )
        torch_future = pool.submit(
            start_torchserve, store, paths.torchserve_dir, TORCH_SETTINGS, None, timeout
        )
        errors = [f.exception() for f in (tf_future, torch_future)]
    failures = [e for e in errors if e is not None]
    if failures:
        down(paths)
        raise failures[0]
    tf, torch = _tensorflow(vars(tf_future.result())), _pytorch(vars(torch_future.result()))
    try:
        registrar = start_registrar(store, paths.run_dir, paths.registrar_dir)
        gateway = start_gateway(
            tf, torch, store, paths.gateway_dir, timeout, gateway_workers, version_labels,
            capture,
        )  # fmt: skip
    except Exception:
        down(paths)
        raise
    state = RunState(tensorflow=tf, pytorch=torch, gateway=_gateway(gateway), registrar=registrar)
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
    paths.state_file.unlink(missing_ok=True)
    return stopped


def status(paths: StackPaths) -> StackStatus:
    """What runs now (a part that does not run is None).

    Raises:
        RunStateError: the gateway runs but `state.json` is not what `up` writes.
    """
    tf, torch = tfserving_status(paths.tfserving_dir), torchserve_status(paths.torchserve_dir)
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
