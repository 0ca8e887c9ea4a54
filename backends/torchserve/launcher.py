"""Start, stop and inspect one TorchServe server, in a run directory of its own.

TorchServe writes `logs/`, its token file `key_file.json` and a pid file into places
it picks itself (working directory, `$TMPDIR`); the launcher points all of them at the
run directory so that two servers (a test run next to `dualserve up`) never collide
and the repository stays clean. The server runs `--foreground` in its own session, so
stopping the process group stops the Java frontend and every Python worker.

    endpoints = start_torchserve(Path("model_store"), Path("run/torchserve"))
    ...
    stop_torchserve(Path("run/torchserve"))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from backends import process
from backends.artifacts import verify_archives
from backends.process import LaunchError, ManagedProcess
from backends.torchserve.archives import find_archives, mar_dir
from backends.torchserve.config import (
    TOKEN_FILE,
    ModelArchive,
    Ports,
    TorchServeSettings,
    render_config,
    worker_env,
)
from backends.torchserve.tokens import bearer, read_token

__all__ = [
    "TorchServeEndpoints",
    "TorchServeSettings",
    "read_token",
    "start_torchserve",
    "stop_torchserve",
    "torchserve_status",
]

NAME = "torchserve"
STATE_FILE = "torchserve.json"
CONFIG_FILE = "config.properties"
# AF_UNIX paths are limited to 108 bytes; TorchServe appends "/.ts.sock.<port>".
_MAX_SOCKET_DIR = 80
STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class TorchServeEndpoints:
    """Where a running TorchServe answers, and how to authenticate."""

    inference: str
    management: str
    metrics: str
    grpc: str
    grpc_management: str
    token_file: str
    pid: int


def start_torchserve(
    model_store: Path,
    run_dir: Path,
    settings: TorchServeSettings | None = None,
    models: list[str] | None = None,
    timeout: float = 180.0,
) -> TorchServeEndpoints:
    """Start TorchServe on `model_store`'s archives; return once every model is READY.

    Args:
        model_store: the store root (holds manifest.json and torchserve/*.mar).
        run_dir: this server's own folder: config, logs, token file, pid, state.
        settings: ports, batching, threads; defaults match the TF Serving side.
        models: model names to load; None loads every model with a TorchServe archive.
        timeout: seconds to wait for every model to have a READY worker.

    Raises:
        LaunchError: naming the archive, when one does not match the sha256 the manifest
            records (nothing is started); with the log tails, when the server fails or is
            not ready in time (the half-started server is stopped first).
    """
    settings = settings or TorchServeSettings()
    model_store, run_dir = Path(model_store).resolve(), Path(run_dir).resolve()
    archives = find_archives(model_store, models, settings.serve_versions)
    verify_archives(model_store, archives)
    settings = _with_gpus(settings)
    # TorchServe (Java) cannot bind port 0 and report it: free ports, one retry if lost.
    return process.retry_on_bind_failure(
        lambda: _launch(model_store, run_dir, settings, archives, timeout), NAME
    )


def _launch(
    model_store: Path,
    run_dir: Path,
    settings: TorchServeSettings,
    archives: list[ModelArchive],
    timeout: float,
) -> TorchServeEndpoints:
    ports = _resolve_ports(settings)
    _prepare_run_dir(run_dir)
    config = run_dir / CONFIG_FILE
    config.write_text(render_config(settings, ports, mar_dir(model_store), archives))
    proc = process.start(
        NAME, _command(config, model_store), run_dir, env=_env(settings, run_dir, config)
    )
    endpoints = _endpoints(settings.host, ports, run_dir, proc)
    try:
        process.wait_until(
            proc, lambda: _all_ready(endpoints, archives), timeout, "ready (every model READY)"
        )
    except LaunchError as exc:
        stop_torchserve(run_dir)
        raise LaunchError(f"{exc}\n{_log_tails(run_dir)}") from None
    _write_state(run_dir, endpoints, archives)
    return endpoints


def stop_torchserve(run_dir: Path) -> bool:
    """Stop the server of `run_dir` (frontend and workers); True if one was running."""
    run_dir = Path(run_dir).resolve()
    stopped = process.stop(_managed(run_dir), timeout=STOP_GRACE_S)
    # A killed frontend leaves its token file; a stale key must not look valid.
    (run_dir / TOKEN_FILE).unlink(missing_ok=True)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return stopped


def torchserve_status(run_dir: Path) -> dict | None:
    """The saved endpoints and models of a running server, or None when none runs.

    Adds `models_ready`: per model, whether the management API reports a READY worker
    right now (False when it does not answer within 2 s).
    """
    run_dir = Path(run_dir).resolve()
    state_file = run_dir / STATE_FILE
    if not _managed(run_dir).running() or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text(encoding="utf-8"))
    endpoints = TorchServeEndpoints(**state["endpoints"])
    state["models_ready"] = {
        name: _model_ready(endpoints, name, timeout=2.0) for name in state["models"]
    }
    return state


def _managed(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def _resolve_ports(settings: TorchServeSettings) -> Ports:
    def pick(port: int) -> int:
        return port or process.free_port(settings.host)

    return Ports(
        inference=pick(settings.inference_port),
        management=pick(settings.management_port),
        metrics=pick(settings.metrics_port),
        grpc_inference=pick(settings.grpc_inference_port),
        grpc_management=pick(settings.grpc_management_port),
        worker_base=process.free_port(settings.host),
    )


def _with_gpus(settings: TorchServeSettings) -> TorchServeSettings:
    if settings.number_of_gpu is not None:
        return settings
    try:
        import torch  # the launcher runs where torch is installed; imported only here

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        count = 0
    return settings.model_copy(update={"number_of_gpu": count})


def _prepare_run_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    if _managed(run_dir).running():
        raise LaunchError(f"TorchServe already runs from {run_dir}; stop it first")
    # Leftovers of a killed server would pass for the new server's token and state.
    for stale in (TOKEN_FILE, STATE_FILE):
        (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    _tmp_dir(run_dir).mkdir(parents=True, exist_ok=True)


def _tmp_dir(run_dir: Path) -> Path:
    """TorchServe's pid file, worker sockets and unpacked archives live here.

    Private per run dir, because TorchServe refuses to start while `$TMPDIR/.model_server.pid`
    names a live server; short, because worker sockets are AF_UNIX paths.
    """
    local = run_dir / "tmp"
    if len(str(local)) <= _MAX_SOCKET_DIR:
        return local
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dualserve-ts-{digest}"


def _command(config: Path, model_store: Path) -> list[str]:
    torchserve = Path(sys.executable).parent / "torchserve"
    if not torchserve.is_file():
        found = shutil.which("torchserve")
        if found is None:
            raise LaunchError("torchserve is not installed (pip install 'dualserve[torchserve]')")
        torchserve = Path(found)
    if shutil.which("java") is None:
        raise LaunchError("java is not on PATH; TorchServe needs Java 17 (make demo installs it)")
    return [
        str(torchserve), "--start", "--foreground", "--ncs",
        "--ts-config", str(config),
        "--model-store", str(mar_dir(model_store)),
    ]  # fmt: skip


def _env(settings: TorchServeSettings, run_dir: Path, config: Path) -> dict[str, str]:
    tmp = str(_tmp_dir(run_dir))
    return {
        **worker_env(settings),
        # TS_CONFIG_FILE outranks --ts-config; pin it so an inherited one cannot win.
        "TS_CONFIG_FILE": str(config),
        "TMPDIR": tmp,  # the launcher's .model_server.pid
        "TEMP": tmp,  # becomes -Djava.io.tmpdir: worker sockets, unpacked .mar files
        "LOG_LOCATION": str(run_dir / "logs"),
        "METRICS_LOCATION": str(run_dir / "logs"),
    }


def _endpoints(host: str, ports: Ports, run_dir: Path, proc: ManagedProcess) -> TorchServeEndpoints:
    pid = proc.pid()
    if pid is None:
        raise LaunchError(f"torchserve exited at once:\n{process.tail(proc.log_file)}")
    return TorchServeEndpoints(
        inference=f"http://{host}:{ports.inference}",
        management=f"http://{host}:{ports.management}",
        metrics=f"http://{host}:{ports.metrics}",
        grpc=f"{host}:{ports.grpc_inference}",
        grpc_management=f"{host}:{ports.grpc_management}",
        token_file=str(run_dir / TOKEN_FILE),
        pid=pid,
    )


def _all_ready(endpoints: TorchServeEndpoints, archives: list[ModelArchive]) -> bool:
    return all(_version_ready(endpoints, a.name, a.version) for a in archives)


def _version_ready(endpoints: TorchServeEndpoints, name: str, version: str) -> bool:
    described = _describe(endpoints, f"{name}/{version}", timeout=2.0)
    return any(_has_ready_worker(entry) for entry in described)


def _model_ready(endpoints: TorchServeEndpoints, name: str, timeout: float) -> bool:
    with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
        return any(_has_ready_worker(entry) for entry in _describe(endpoints, name, timeout))
    return False


def _describe(endpoints: TorchServeEndpoints, path: str, timeout: float) -> list[dict]:
    """`GET /models/{path}` of the management API (a list, one entry per version)."""
    key = read_token(Path(endpoints.token_file), "management")
    response = httpx.get(
        f"{endpoints.management}/models/{path}", headers=bearer(key), timeout=timeout
    )
    response.raise_for_status()
    return list(response.json())


def _has_ready_worker(entry: dict) -> bool:
    return any(worker.get("status") == "READY" for worker in entry.get("workers", []))


def _write_state(
    run_dir: Path, endpoints: TorchServeEndpoints, archives: list[ModelArchive]
) -> None:
    state = {
        "endpoints": asdict(endpoints),
        "models": sorted({a.name for a in archives}),
        "archives": [asdict(a) for a in archives],
        "config": str(run_dir / CONFIG_FILE),
    }
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / STATE_FILE)


def _log_tails(run_dir: Path, lines: int = 30) -> str:
    """The end of TorchServe's own logs (frontend, model workers) for error messages."""
    parts = [
        f"--- {log.name} ---\n{process.tail(log, lines)}"
        for log in sorted((run_dir / "logs").glob("*.log"))
        if log.stat().st_size
    ]
    return "\n".join(parts) or f"(no TorchServe logs under {run_dir / 'logs'})"
