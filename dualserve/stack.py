"""Bring the serving stack up and down: both backends, tracked by pid files under a run dir.

`run_dir/state.json` records the addresses of what runs; the gateway and the load tests
read it (through `read_state`) instead of guessing ports.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends.tfserving.commandline import TFServingSettings
from backends.tfserving.launcher import start_tfserving, stop_tfserving, tfserving_status
from backends.torchserve.config import TorchServeSettings
from backends.torchserve.launcher import start_torchserve, stop_torchserve, torchserve_status
from dualserve.registrar_process import registrar_running, start_registrar, stop_registrar
from gateway.processes.launcher import gateway_running, gateway_workers, start_gateway, stop_gateway

STATE_FILE = "state.json"
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
) -> dict[str, Any]:
    """Start both backends in parallel, then the gateway (`gateway_workers` processes)
    in front of them; wait until every model is ready.

    `version_labels` (model -> label -> version, none by default) go into TF Serving's
    model config and the gateway's config alike: the one source of both.

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
    state = _state(asdict(tf_future.result()), asdict(torch_future.result()))
    try:
        state["registrar"] = start_registrar(store, paths.run_dir, paths.registrar_dir)
        gateway = start_gateway(
            state, store, paths.gateway_dir, timeout, gateway_workers, version_labels
        )
    except Exception:
        down(paths)
        raise
    state["gateway"] = _gateway_entry(asdict(gateway))
    _write_state(paths.state_file, state)
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


def status(paths: StackPaths) -> dict[str, Any]:
    """What runs now, in the `dualserve status --json` form (absent keys: not running)."""
    tf, torch = tfserving_status(paths.tfserving_dir), torchserve_status(paths.torchserve_dir)
    state = _state(tf, torch["endpoints"] if torch else None)
    registrar = registrar_running(paths.registrar_dir)
    if registrar is not None:
        state["registrar"] = registrar
    if gateway_running(paths.gateway_dir) and paths.state_file.is_file():
        recorded = json.loads(paths.state_file.read_text()).get("gateway")
        if recorded:  # the workers as they are now: a dead one is replaced by a new pid
            state["gateway"] = {**recorded, "worker_pids": gateway_workers(paths.gateway_dir)}
    return state


def read_state(run_dir: Path) -> dict[str, Any]:
    """The addresses `up` wrote, for the gateway and load tests."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `dualserve up` first")
    return dict(json.loads(path.read_text()))


def _state(tf: dict[str, Any] | None, torch: dict[str, Any] | None) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if tf:
        state["tensorflow"] = {
            "rest": tf["rest"],
            "grpc": tf["grpc"],
            "metrics": tf.get("metrics"),
            "binary": tf.get("binary"),
            "pid": tf.get("pid"),
        }
    if torch:
        state["pytorch"] = {
            "inference": torch["inference"],
            "management": torch["management"],
            "grpc": torch["grpc"],
            "token_file": torch["token_file"],
            "metrics": torch.get("metrics"),
            "pid": torch.get("pid"),
        }
    return state


def _gateway_entry(gateway: dict[str, Any]) -> dict[str, Any]:
    keys = ("rest", "admin_token_file", "config_file", "pid", "workers")
    entry = {k: gateway[k] for k in keys} | {"worker_pids": list(gateway["worker_pids"])}
    if gateway.get("grpc"):
        entry["grpc"] = gateway["grpc"]
    return entry


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)
