"""uvicorn's worker supervisor, told to report its workers and to clean up after dead ones.

uvicorn's `Multiprocess` (uvicorn/supervisors/multiprocess.py) spawns the workers, pings
each every 0.5 s, replaces one that died or hangs, stops every worker on SIGINT/SIGTERM and
stops the whole gateway when a worker fails during start-up. This subclass adds what the
gateway needs around that: the live worker pids after every change (for `workers.json`),
prometheus_client's `mark_process_dead` for every worker that is gone, and an exit status
that tells a stop on request (0) from a stop on a broken start (3, uvicorn's
STARTUP_FAILURE).

Drain (issue 24): each worker runs `connections.DrainingServer`, whose shutdown resets no
connection, and the supervisor closes its own copy of the listening socket before it
signals the workers: a copy left open here keeps the kernel completing connections that
no worker will ever accept, and resets them when the supervisor exits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from socket import socket

from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.server import Server
from uvicorn.supervisors import multiprocess as uvicorn_multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.processes.connections import DrainingServer

logger = logging.getLogger("uvicorn.error")
STARTUP_TIMEOUT_S = 120.0
"""Longest wait for a worker to serve at start-up (imports and the lifespan included)."""


class DrainingProcess(uvicorn_multiprocess.Process):
    """uvicorn's worker process, serving with `DrainingServer`."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


# uvicorn's Multiprocess names `Process` at every spawn (start, restart, TTIN, replacing a
# dead worker); the subclass above takes its place for this supervisor's module only.
uvicorn_multiprocess.Process = DrainingProcess  # type: ignore[misc]


class Supervisor(Multiprocess):
    """`Multiprocess` plus `on_workers(pids)` after every change of the worker set."""

    def __init__(
        self, config: Config, sockets: list[socket], on_workers: Callable[[list[int]], None]
    ) -> None:
        super().__init__(config, sockets)
        self.on_workers = on_workers
        self.known: list[int] = []
        self.stop_requested = False

    @property
    def exit_status(self) -> int:
        """0 after SIGINT/SIGTERM, STARTUP_FAILURE when a worker could not start."""
        return 0 if self.stop_requested else STARTUP_FAILURE

    def init_processes(self) -> None:
        """Start every worker and wait until each serves (or dies) before reporting them,
        so that whoever reads `on_workers` first finds every worker serving."""
        super().init_processes()
        for process in self.processes:
            process.wait_until_ready(STARTUP_TIMEOUT_S, self.should_exit)
        self._follow()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._follow()

    def handle_signals(self) -> None:  # SIGHUP, SIGTTIN, SIGTTOU change the workers too
        super().handle_signals()
        self._follow()

    def handle_int(self) -> None:
        self.stop_requested = True
        super().handle_int()

    def handle_term(self) -> None:
        self.stop_requested = True
        super().handle_term()

    def terminate_all(self) -> None:
        """Close this process's copy of the listening sockets, then stop the workers (they
        drain and close theirs: the last one to close it is the listener's end)."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def _follow(self) -> None:
        pids = [p.pid for p in self.processes if p.pid is not None]
        if pids == self.known:
            return
        for gone in set(self.known) - set(pids):
            logger.warning("gateway worker %d is gone", gone)
            multiprocess.mark_process_dead(gone)
        self.known = pids
        self.on_workers(pids)
