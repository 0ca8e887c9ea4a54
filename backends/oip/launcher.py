"""Start, stop and inspect the bundled OIP server (`python -m backends.oip`) for
`dualserve up`.

Like the other launchers: the process runs detached in its own session, tracked by pid
file (`backends.process`), logging to `run_dir/oip.log`; it binds free loopback ports
itself and reports them in a ports file (no race for a port); `start_oip` returns once
`/v2/health/ready` answers 200, i.e. every model with a `.pt2` export has a version loaded.
The programs' sha256 are checked by the server before it loads them
(`backends.oip.repository`); here only that there is something to serve. No torch import.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends import process
from backends.process import LOOPBACK, LaunchError, ManagedProcess

NAME = "oip"
ENDPOINTS_FILE = "oip.json"
PORTS_FILE = "oip.ports.json"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OipEndpoints:
    """Where a started server listens."""

    rest: str
    """Base REST URL, "http://127.0.0.1:P"."""
    grpc: str
    """gRPC target, "127.0.0.1:P"."""
    metrics: str
    """Full URL of the Prometheus page."""
    pid: int


@dataclass(frozen=True)
class OipServerSettings:
    """The server's flags (`python -m backends.oip --help`)."""

    num_versions: int = 2
    threads: int = 1
    poll_s: float = 2.0
    max_batch_size: int = 4096
    max_waiting: int = 64


def pt2_models(model_store: Path) -> list[str]:
    """Every model of the manifest with a `.pt2` export in some version."""
    from trainers.manifest import load_manifest

    manifest = load_manifest(model_store)
    return sorted(
        name
        for name, entry in manifest.models.items()
        if any(
            (fw := v.frameworks.get("pytorch")) is not None and fw.pt2 is not None
            for v in entry.versions.values()
        )
    )


def managed(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def start_oip(
    model_store: Path,
    run_dir: Path,
    settings: OipServerSettings | None = None,
    timeout: float = 120.0,
) -> OipEndpoints:
    """Start the server on `model_store`; return once it serves every `.pt2` model.

    Raises:
        LaunchError: no model has a `.pt2` export, or the server exited or was not ready
            within `timeout` (the message carries its log tail; it is stopped then).
    """
    settings = settings or OipServerSettings()
    run_dir = Path(run_dir).resolve()
    if not pt2_models(Path(model_store)):
        raise LaunchError(f"no model with a .pt2 export in {model_store}/manifest.json")
    ports_file = run_dir / PORTS_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    ports_file.unlink(missing_ok=True)
    proc = process.start(NAME, _command(model_store, ports_file, settings), run_dir, env=_env())
    try:
        process.wait_until(proc, ports_file.is_file, timeout, what="listening", interval=0.1)
        ports = json.loads(ports_file.read_text(encoding="utf-8"))
        rest = f"http://{LOOPBACK}:{ports['rest']}"
        process.wait_until(proc, lambda: _ready(rest), timeout, what="ready")
    except BaseException:
        process.stop(proc)
        raise
    endpoints = OipEndpoints(
        rest, f"{LOOPBACK}:{ports['grpc']}", rest + "/metrics", proc.pid() or 0
    )
    record = {**asdict(endpoints), "settings": asdict(settings)}
    (run_dir / ENDPOINTS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return endpoints


def _command(model_store: Path, ports_file: Path, s: OipServerSettings) -> list[str]:
    return [
        sys.executable, "-m", "backends.oip",
        "--model-store", str(Path(model_store).resolve()),
        "--host", LOOPBACK,
        "--ports-file", str(ports_file),
        "--num-versions", str(s.num_versions),
        "--threads", str(s.threads),
        "--poll-s", str(s.poll_s),
        "--max-batch-size", str(s.max_batch_size),
        "--max-waiting", str(s.max_waiting),
    ]  # fmt: skip


def _env() -> dict[str, str]:
    existing = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{existing}" if existing else str(REPO_ROOT)}


def _ready(rest: str) -> bool:
    try:
        with urllib.request.urlopen(f"{rest}/v2/health/ready", timeout=2.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop_oip(run_dir: Path) -> bool:
    """Stop the server started in `run_dir`; True if one was running."""
    run_dir = Path(run_dir).resolve()
    stopped = process.stop(managed(run_dir))
    (run_dir / ENDPOINTS_FILE).unlink(missing_ok=True)
    (run_dir / PORTS_FILE).unlink(missing_ok=True)
    return stopped


def oip_status(run_dir: Path) -> dict[str, Any] | None:
    """Endpoints and the live pid of the server in `run_dir`; None if not running."""
    run_dir = Path(run_dir).resolve()
    pid = managed(run_dir).pid()
    if pid is None:
        return None
    try:
        record = json.loads((run_dir / ENDPOINTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # started but not yet ready
    return {**record, "pid": pid}
