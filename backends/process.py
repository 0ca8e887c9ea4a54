"""Process plumbing shared by the launchers: free ports, pid files, readiness, clean stop.

Processes are tracked by pid files (never by name) and started in their own session so
that stopping one stops everything it spawned (TorchServe's Java frontend and its Python
workers, for example).

A pid file names the process by pid AND start time (`psutil.Process.create_time`, seconds
since the epoch), as `{"pid": 123, "create_time": 1764398400.12}`: after a reboot or a
crash the pid may belong to another process, and a bare pid would make `dualserve down`
signal that process's whole group. A pid whose start time differs, and a pid file in the
old bare-pid form (which cannot prove anything), count as not running: the file is
removed with a warning and nothing is signalled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

LOOPBACK = "127.0.0.1"
START_TIME_TOLERANCE_S = 1.0
"""Linux derives create_time from the boot time in /proc/stat, which can move by up to a
second between reads; a reused pid starts later than that (the pid space must wrap)."""
BIND_FAILURE_MARKERS = ("Address already in use", "cannot bind", "Failed to bind")
"""Log lines of a server that lost its port (Python, Java BindException, gRPC core)."""

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LaunchError(RuntimeError):
    """A server did not start or become ready; the message carries its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def retry_on_bind_failure(launch: Callable[[], T], name: str) -> T:
    """`launch()`, and once more when it failed because the server could not bind a port.

    For servers that cannot bind port 0 themselves (TorchServe, the real
    `tensorflow_model_server`): `free_port` closes its probe socket before the server
    binds, so another process can take the port in between. `launch` must choose its
    free ports anew on each call and stop what it started when it fails.

    Raises:
        LaunchError: the second failure, or a first one that is not a bind failure.
    """
    try:
        return launch()
    except LaunchError as exc:
        if not any(marker in str(exc) for marker in BIND_FAILURE_MARKERS):
            raise
        logger.warning("%s could not bind a port chosen for it; retrying once", name)
    return launch()


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, or a note that there is none."""
    if not path.is_file():
        return f"(no log at {path})"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: the pid and the process's start time (epoch seconds)."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> PidRecord:
        """The record of the live process `pid` (psutil.Error when it is gone)."""
        return cls(pid, psutil.Process(pid).create_time())

    @classmethod
    def parse(cls, text: str) -> PidRecord | None:
        """The record in a pid file's text; None for anything else (a bare pid too)."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), float(data["create_time"]))
        except (ValueError, TypeError, KeyError):
            return None

    def text(self) -> str:
        return json.dumps({"pid": self.pid, "create_time": self.create_time}) + "\n"

    def is_running(self) -> bool:
        """True while the very process that was recorded runs (not a zombie)."""
        if not pid_alive(self.pid):
            return False
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.Error:
            return False
        return abs(started - self.create_time) <= START_TIME_TOLERANCE_S


@dataclass(frozen=True)
class ManagedProcess:
    """A process started by dualserve: its pid file and log, under a run directory."""

    name: str
    pid_file: Path
    log_file: Path

    def pid(self) -> int | None:
        """The recorded pid while that very process is alive, else None.

        A pid file that does not identify a live process of ours (unreadable, a bare pid,
        a pid now used by a process started at another time) is removed with a warning.
        """
        try:
            text = self.pid_file.read_text()
        except OSError:
            return None
        record = PidRecord.parse(text)
        if record is not None and record.is_running():
            return record.pid
        if record is None or pid_alive(record.pid):
            self._forget(text.strip())
        return None

    def running(self) -> bool:
        return self.pid() is not None

    def record(self, pid: int) -> None:
        """Write the pid file of the just-started process `pid` (atomically)."""
        tmp = self.pid_file.with_name(f".{self.pid_file.name}.tmp")
        tmp.write_text(PidRecord.of(pid).text())
        tmp.replace(self.pid_file)

    def _forget(self, content: str) -> None:
        logger.warning(
            "%s: %s does not identify a process dualserve started (%r; the pid is free or"
            " belongs to a process started at another time); removed it, nothing signalled",
            self.name,
            self.pid_file,
            content[:80],
        )
        self.pid_file.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as dead (reaped here when it is our child,
    else by init, which may be slow in containers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    with contextlib.suppress(psutil.Error):
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    return False


def start(
    name: str,
    command: Sequence[str],
    run_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `command` detached in its own session, logging to run_dir/<name>.log."""
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(name, run_dir / f"{name}.pid", run_dir / f"{name}.log")
    if proc.running():
        raise LaunchError(f"{name} already runs with pid {proc.pid()} ({proc.pid_file})")
    with open(proc.log_file, "ab") as log:
        child = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or run_dir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    proc.record(child.pid)
    return proc


def wait_until(
    proc: ManagedProcess,
    ready: Callable[[], bool],
    timeout: float,
    what: str = "ready",
    interval: float = 0.25,
) -> None:
    """Poll `ready()` until true; fail early if the process died, with the log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise LaunchError(f"{proc.name} exited before it was {what}:\n{tail(proc.log_file)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(interval)
    raise LaunchError(f"{proc.name} was not {what} after {timeout:.0f} s:\n{tail(proc.log_file)}")


def stop(proc: ManagedProcess, timeout: float = 20.0) -> bool:
    """SIGTERM the whole process group and wait for every member, not just the leader;
    SIGKILL what is left after `timeout`. True if something was running.

    Leaders such as the `torchserve` launcher script die at once while their children
    (the JVM, its Python workers) take a moment, so waiting on the leader alone would
    report a stop while processes still hold ports.
    """
    pid = proc.pid()
    if pid is None:
        proc.pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    if not _wait_group_gone(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_group_gone(pid, 5.0)
    proc.pid_file.unlink(missing_ok=True)
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes of a group (zombies are dead: they hold no resources)."""
    members = []
    for candidate in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            alive = candidate.info["status"] != psutil.STATUS_ZOMBIE
            if alive and os.getpgid(candidate.pid) == pgid:
                members.append(candidate.pid)
    return members


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pgid) and not group_members(pgid):
            return True
        time.sleep(0.1)
    return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
