"""Pid files identify their process by pid and start time (issue 14): `dualserve down`
never signals a process it did not start."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from backends.process import (
    LaunchError,
    ManagedProcess,
    PidRecord,
    free_port,
    retry_on_bind_failure,
    start,
    stop,
)
from dualserve.cli import app


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process dualserve did not start, leading its own process group (so a
    `killpg` on its pid would hit it)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _managed(run_dir: Path, name: str) -> ManagedProcess:
    return ManagedProcess(name, run_dir / f"{name}.pid", run_dir / f"{name}.log")


def _forge(pid_file: Path, pid: int, create_time: float) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps({"pid": pid, "create_time": create_time}))


def test_a_reused_pid_is_not_running_and_not_signalled(
    tmp_path: Path, bystander: subprocess.Popen[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    proc = _managed(tmp_path, "tfserving")
    started = psutil.Process(bystander.pid).create_time()
    _forge(proc.pid_file, bystander.pid, started - 3600)  # "our" process ran an hour earlier
    with caplog.at_level(logging.WARNING):
        assert proc.pid() is None
    assert "does not identify a process dualserve started" in caplog.text
    assert not proc.pid_file.exists()
    _forge(proc.pid_file, bystander.pid, started - 3600)
    assert stop(proc, timeout=1) is False
    assert bystander.poll() is None  # still alive: never signalled
    assert not proc.pid_file.exists()


def test_a_bare_pid_file_proves_nothing(tmp_path: Path, bystander: subprocess.Popen[bytes]) -> None:
    proc = _managed(tmp_path, "gateway")
    proc.pid_file.write_text(f"{bystander.pid}\n")  # the format before start times
    assert stop(proc, timeout=1) is False
    assert bystander.poll() is None and not proc.pid_file.exists()


@pytest.mark.parametrize("form", ["bare pid", "other start time"])
def test_dualserve_down_leaves_an_unrelated_process_alone(
    tmp_path: Path, bystander: subprocess.Popen[bytes], form: str
) -> None:
    run_dir = tmp_path / "run"
    started = psutil.Process(bystander.pid).create_time()
    for name in ("gateway", "tfserving", "torchserve"):
        pid_file = run_dir / name / f"{name}.pid"
        _forge(pid_file, bystander.pid, started + 5)
        if form == "bare pid":
            pid_file.write_text(f"{bystander.pid}\n")
    result = CliRunner().invoke(app, ["down", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    print(result.output)
    assert "nothing was running" in result.output
    assert bystander.poll() is None
    assert not list(run_dir.rglob("*.pid"))


def test_a_started_process_is_recorded_and_stopped(tmp_path: Path) -> None:
    proc = start("sleeper", ["sleep", "300"], tmp_path)
    record = PidRecord.parse(proc.pid_file.read_text())
    assert record is not None and record.is_running()
    assert proc.pid() == record.pid
    assert record.create_time == pytest.approx(psutil.Process(record.pid).create_time())
    assert stop(proc, timeout=5) is True
    assert not psutil.pid_exists(record.pid) or not record.is_running()
    assert not proc.pid_file.exists()


def test_a_lost_port_is_retried_once_with_fresh_ports() -> None:
    attempts: list[int] = []

    def launch() -> int:
        attempts.append(free_port())  # a launcher picks its free ports on every attempt
        if len(attempts) == 1:
            raise LaunchError("torchserve exited: java.net.BindException: Address already in use")
        return attempts[-1]

    assert retry_on_bind_failure(launch, "torchserve") == attempts[-1]
    assert len(attempts) == 2


def test_other_launch_failures_and_a_second_bind_failure_are_not_retried() -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise LaunchError("model digits-mlp failed to load")

    with pytest.raises(LaunchError, match="failed to load"):
        retry_on_bind_failure(broken, "tfserving")
    assert calls == ["broken"]

    def always_taken() -> None:
        calls.append("taken")
        raise LaunchError("cannot bind the gRPC port 127.0.0.1:8500")

    with pytest.raises(LaunchError, match="cannot bind"):
        retry_on_bind_failure(always_taken, "tfserving")
    assert calls.count("taken") == 2
