"""Where a report's numbers were measured: machine, software, server settings, git commit."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from loadtest.nginx import nginx_version

PACKAGES = ("tensorflow", "torch", "torchserve", "locust", "grpcio", "fastapi", "uvicorn")


def capture(state: dict[str, Any], repo: Path) -> dict[str, Any]:
    """Everything the report prints under "Environment"."""
    return {
        "cpu": _cpu_model(),
        "cores": f"{psutil.cpu_count(logical=False)} physical, {psutil.cpu_count()} logical",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "gpu": _gpu(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "tf_serving": str(state.get("tensorflow", {}).get("binary", "unknown")),
        "nginx": nginx_version(),
        "git_commit": _git(repo),
    }


def process_facts(pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Per server process (backend, gateway, nginx) as it ran: its threads, its child
    processes (TorchServe's Python workers, the gateway's workers) and their threads, and
    the thread-pool variables it was started with (`OMP_NUM_THREADS`, TorchServe's
    `DUALSERVE_TORCH_THREADS`). A process that is gone, or not ours to read, is left out."""
    found: dict[str, dict[str, Any]] = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            children = proc.children(recursive=True)
            env = proc.environ()
            found[name] = {
                "threads": proc.num_threads(),
                "children": len(children),
                "child_threads": [c.num_threads() for c in children],
                "thread_env": {k: env[k] for k in THREAD_ENV if k in env},
            }
        except (psutil.Error, OSError):
            continue
    return found


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "DUALSERVE_TORCH_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none"
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "nvidia-smi failed"
    return done.stdout.strip() or "none"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(repo: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return f"{commit} (uncommitted changes)" if dirty.stdout.strip() else commit


def model_quality(model_store: Path, models: tuple[str, ...]) -> list[dict[str, Any]]:
    """Test accuracy per framework and top-1 agreement of each model's latest version."""
    from trainers.manifest import load_manifest

    manifest = load_manifest(model_store)
    rows = []
    for model in models:
        entry = manifest.models.get(model)
        if entry is None or not entry.versions:
            continue
        version = max(entry.versions.values(), key=lambda v: v.version)
        accuracy = {fw: art.test_accuracy for fw, art in version.frameworks.items()}
        agreement = version.agreement.top1 if version.agreement else None
        rows.append(
            {
                "model": model,
                "version": version.version,
                "accuracy": accuracy,
                "agreement": agreement,
            }
        )
    return rows
