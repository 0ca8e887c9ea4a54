"""Graceful shutdown: on SIGTERM, stop being chosen, answer what was accepted, then exit.

The order, per worker process (Kubernetes' pod termination and Envoy's drain do the same):

1. SIGTERM arrives: `Drain.begin()` (see `hold_exit_signals`). `/readyz`,
   `/v2/health/ready` and gRPC health answer not ready, so load balancers stop choosing
   this process; it keeps serving, and every REST reply carries `Connection: close` so
   keep-alive clients reconnect elsewhere.
2. After `drain.delay_s`, the listener closes (`processes.connections.DrainingServer`):
   connections the kernel already completed are accepted first and the listening socket
   is closed right after, with no await between the two (closing a listener resets what
   waits in its backlog, and a client may have sent its request there already). With
   several workers the supervisor has closed its own copy of the socket before it
   signalled them, so the last worker's close is the listener's end; no child process
   holds a copy (the socket is made non-inheritable before the prediction log's writer
   is started).
3. Then every connection is drained, never cut: one with a request in flight answers it
   with `Connection: close` and closes; an idle one (no request in flight, nothing
   parsed) is closed only after `drain.idle_close_s` without a byte, and only when the
   kernel holds no unread byte for it (FIONREAD); a request that arrives first is read
   and answered with `Connection: close`. Requests in flight may take `drain.grace_s`;
   then the lifespan's shutdown stops the gRPC ingress with the same grace, drains the
   shadow queue and flushes the prediction log.

Without step 1, an idle keep-alive connection is closed at the signal while a client is
already sending on it: measured before this module, one request of 16 clients' traffic
was reset at every SIGTERM. Without steps 2-3, each SIGTERM under 16 clients of aiohttp's
or httpx's pool reset 16-32 POSTs, 1 or 2 workers alike (issue 24; now 0,
tests/integration/test_recovery_clients.py): the log writer held the listener open, so
every client's next connection was queued where no one would accept it, and reset when
the writer exited.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType


class Drain:
    """The process's draining flag, read by readiness and the REST fast path.

    Args:
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at: float | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = self._clock()

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else self._clock() - self.started_at


def hold_exit_signals(drain: Drain, delay_s: float) -> Callable[[], None]:
    """Put step 1 in front of the server's own SIGTERM/SIGINT handling; returns the undo.

    Called from the app's lifespan, after uvicorn installed its handlers (uvicorn uses
    `signal.signal`, whatever runs it: one process or each worker of its supervisor). The
    first signal starts the drain and hands the signal to the server's handler
    `delay_s` later; a second SIGINT goes through at once. Outside the main thread
    (tests' in-process servers) there is nothing to hold and nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def on_exit_signal(sig: int, frame: FrameType | None) -> None:
        handler = previous[signal.Signals(sig)]
        if not callable(handler):
            return
        if drain.draining:
            if sig == signal.SIGINT:
                handler(sig, frame)
            return
        drain.begin()
        loop.call_soon_threadsafe(loop.call_later, delay_s, handler, sig, frame)

    for sig in previous:
        signal.signal(sig, on_exit_signal)

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo
