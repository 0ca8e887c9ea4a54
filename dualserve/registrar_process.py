"""Start, stop and find the registrar process (`dualserve.registrar`) of a stack."""

from __future__ import annotations

import sys
from pathlib import Path

from backends.process import ManagedProcess, start, stop
from dualserve.run_state import RegistrarState

NAME = "registrar"


def _process(run_dir: Path) -> ManagedProcess:
    return ManagedProcess(NAME, run_dir / f"{NAME}.pid", run_dir / f"{NAME}.log")


def start_registrar(store: Path, stack_run_dir: Path, run_dir: Path) -> RegistrarState:
    """Start `python -m dualserve.registrar` for the stack in `stack_run_dir` (its backends
    already up); its pid file and log go to `run_dir`. Returns its `state.json` entry."""
    command = [
        sys.executable, "-m", "dualserve.registrar",
        "--model-store", str(store), "--run-dir", str(stack_run_dir),
    ]  # fmt: skip
    proc = start(NAME, command, run_dir)
    return RegistrarState(pid=proc.pid(), record=run_dir / "models.json")


def stop_registrar(run_dir: Path) -> bool:
    return stop(_process(run_dir), timeout=10)


def registrar_running(run_dir: Path) -> RegistrarState | None:
    pid = _process(run_dir).pid()
    return None if pid is None else RegistrarState(pid=pid, record=run_dir / "models.json")
