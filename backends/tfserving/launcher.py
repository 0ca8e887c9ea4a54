"""Start, stop and inspect one TF Serving process for dualserve.

Runs the real `tensorflow_model_server` when it is on PATH, else the bundled server
(`python -m backends.tfserving`) with the identical command line. Writes the model
config, batching parameters and monitoring config into the run directory, tracks the
process by pid file (backends.process) and records its endpoints in `tfserving.json`.
No TensorFlow import here: the CLI must stay fast.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends import process
from backends.artifacts import verify_savedmodels
from backends.process import LOOPBACK, LaunchError, ManagedProcess
from backends.tfserving.aux_config import DEFAULT_METRICS_PATH
from backends.tfserving.commandline import (
    BINARY,
    PORTS_FILE_ENV,
    TFServingSettings,
    server_command,
    server_flags,
    write_configs,
)

NAME = "tfserving"
ENDPOINTS_FILE = "tfserving.json"
PORTS_FILE = "tfserving.ports.json"
REPO_ROOT = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT = 2.0


@dataclass(frozen=True)
class TFServingEndpoints:
    """Where a started server listens."""

    rest: str
    """Base REST URL, "http://127.0.0.1:P"."""
    grpc: str
    """gRPC target, "127.0.0.1:P"."""
    metrics: str
    """Full URL of the Prometheus page."""
    binary: str
    """"tensorflow_model_server" (the real binary) or "bundled"."""
    pid: int


def tf_models(model_store: Path) -> list[str]:
    """Every model in the manifest that has a TensorFlow export."""
    from trainers.manifest import load_manifest

    manifest = load_manifest(model_store)
    return sorted(
        name
        for name, entry in manifest.models.items()
        if any("tensorflow" in v.frameworks for v in entry.versions.values())
    )


def managed(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def start_tfserving(
    model_store: Path,
    run_dir: Path,
    settings: TFServingSettings | None = None,
    models: list[str] | None = None,
    timeout: float = 120.0,
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
) -> TFServingEndpoints:
    """Start TF Serving for `models` (default: every TF model in the manifest), with
    `version_labels` (model -> label -> version) in its model config.

    The SavedModel each model would load is first verified against the manifest's
    sha256 (`backends.artifacts`; a mismatch is a LaunchError naming it, before any start).
    The bundled server binds the ports it is not given itself and reports them (no race
    for a free port); the real binary gets free ports, with one retry if it loses one.
    Returns once every model has an AVAILABLE version; on failure or timeout the process
    is stopped and LaunchError carries the log tail. Endpoints go to run_dir/tfserving.json.
    """
    settings = settings or TFServingSettings()
    run_dir = Path(run_dir).resolve()
    models = list(models) if models is not None else tf_models(Path(model_store))
    _check_exports(Path(model_store), models)
    verify_savedmodels(Path(model_store), models)
    files = write_configs(Path(model_store), run_dir, settings, models, version_labels)
    return process.retry_on_bind_failure(
        lambda: _launch(run_dir, settings, models, files, timeout), NAME
    )


def _launch(
    run_dir: Path,
    settings: TFServingSettings,
    models: list[str],
    files: dict[str, Path],
    timeout: float,
) -> TFServingEndpoints:
    binary = shutil.which(BINARY) or ""
    ports_file = None if binary else run_dir / PORTS_FILE
    if ports_file is None:  # the real binary cannot bind port 0 and tell us the port
        ports = (
            settings.grpc_port or process.free_port(),
            settings.rest_port or process.free_port(),
        )
    else:
        ports_file.unlink(missing_ok=True)
        ports = (settings.grpc_port, settings.rest_port)
    command, kind = server_command(server_flags(settings, *ports, files), binary)
    env = {**_child_env(), **({PORTS_FILE_ENV: str(ports_file)} if ports_file else {})}
    proc = process.start(NAME, command, run_dir, env=env)
    deadline = time.monotonic() + timeout
    try:
        grpc_port, rest_port = _bound_ports(proc, ports, ports_file, timeout)
        rest = f"http://{LOOPBACK}:{rest_port}"
        _wait_available(proc, rest, models, max(deadline - time.monotonic(), 1.0))
    except BaseException:
        process.stop(proc)
        raise
    endpoints = TFServingEndpoints(
        rest, f"{LOOPBACK}:{grpc_port}", rest + DEFAULT_METRICS_PATH, kind, proc.pid() or 0
    )
    record = {**asdict(endpoints), "models": models, "settings": asdict(settings)}
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return endpoints


def _bound_ports(
    proc: ManagedProcess, ports: tuple[int, int], ports_file: Path | None, timeout: float
) -> tuple[int, int]:
    """(gRPC, REST): the given ones, or those the bundled server reports once it listens
    (it loads every model before it opens its ports, like the real binary)."""
    if ports_file is None:
        return ports
    process.wait_until(proc, ports_file.is_file, timeout, what="listening", interval=0.1)
    bound = json.loads(ports_file.read_text(encoding="utf-8"))
    return int(bound["grpc"]), int(bound["rest"])


def _check_exports(model_store: Path, models: list[str]) -> None:
    """Fail at once, not after the timeout, when there is nothing to load."""
    if not models:
        raise LaunchError(f"no model with a tensorflow export in {model_store}/manifest.json")
    for model in models:
        base = model_store / "tensorflow" / model
        versions = [p for p in base.glob("*") if p.name.isdigit() and p.is_dir()]
        if not versions:
            raise LaunchError(f"{model}: no SavedModel version directory under {base}")


def _child_env() -> dict[str, str]:
    """The bundled server imports `backends` from this checkout and binds loopback only."""
    existing = os.environ.get("PYTHONPATH", "")
    path = f"{REPO_ROOT}{os.pathsep}{existing}" if existing else str(REPO_ROOT)
    return {"PYTHONPATH": path, "DUALSERVE_TFSERVING_HOST": LOOPBACK}


def _wait_available(proc: ManagedProcess, rest: str, models: list[str], timeout: float) -> None:
    failures: dict[str, str] = {}

    def ready() -> bool:
        states = {m: model_state(rest, m) for m in models}
        failures.update({m: s for m, s in states.items() if s not in ("AVAILABLE", None)})
        return bool(failures) or all(s == "AVAILABLE" for s in states.values())

    process.wait_until(proc, ready, timeout, what="serving " + ", ".join(models))
    if failures:
        detail = "; ".join(f"{m}: {why}" for m, why in failures.items())
        raise LaunchError(f"{NAME} could not load {detail}:\n{process.tail(proc.log_file)}")


def model_state(rest: str, model: str) -> str | None:
    """ "AVAILABLE", None while loading/unreachable, or the error of a failed load."""
    try:
        body = _get_json(f"{rest}/v1/models/{model}")
    except (OSError, ValueError):
        return None
    versions = body.get("model_version_status", [])
    if any(v.get("state") == "AVAILABLE" for v in versions):
        return "AVAILABLE"
    errors = [
        v["status"]["error_message"] for v in versions if v.get("status", {}).get("error_message")
    ]
    return errors[0] if errors and all(v.get("state") == "END" for v in versions) else None


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise OSError(f"{url}: HTTP {exc.code}") from None


def stop_tfserving(run_dir: Path) -> bool:
    """Stop the server started in `run_dir`; True if one was running."""
    run_dir = Path(run_dir).resolve()
    stopped = process.stop(managed(run_dir))
    (run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
    (run_dir / PORTS_FILE).unlink(missing_ok=True)
    return stopped


def tfserving_status(run_dir: Path) -> dict[str, Any] | None:
    """Endpoints, models and the live pid of the server in `run_dir`; None if not running."""
    run_dir = Path(run_dir).resolve()
    pid = managed(run_dir).pid()
    if pid is None:
        return None
    try:
        record = json.loads((run_dir / ENDPOINTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}  # started but not yet ready, or the record was removed
    return {**record, "pid": pid, "running": True}
