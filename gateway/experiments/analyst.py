"""The analyst: experiments' analyses run in a process of their own, never in the serving one.

    python -m gateway.experiments.analyst '{"database_url": ..., "data_dir": ...}'

Why (issue 23): an analysis that loads the log's rows into the serving process competes
with the event loop for the GIL and grows the process with the log (measured on 1M rows:
the gateway's throughput fell to 0.37x and its p99 rose 10x while `GET
/admin/experiments/{id}` ran, RSS 1 GB). Here the database computes the aggregates
(`log.aggregates`) and a child process, one per gateway process and started at its first
analysis, runs the statistics on them (`analysis.analyse_store`); the serving process
only sends a request and reads back the JSON. Its memory is sized by the aggregates
(units), not by the log.

Protocol (as the log's writer, `log.process`): each frame on stdin or stdout is a 4-byte
big-endian length and a UTF-8 JSON payload. Request `{"experiment": id, "since": ts or
null, "events": [Event.as_dict(), ...], "history": bool}` (an analysis), or `{"read":
name, "args": [...]}` for one of the log's other reads that grow with it (`READS`: live
figures, successful requests per arm); answer `{"result": ..., "cpu_s": s}` (the child's
CPU seconds on it) or `{"error": "..."}`, one at a time, in order, after one `{"ready":
true}`. The child ignores SIGTERM and SIGINT (the gateway's
drain decides) and exits when stdin closes.

`Analyst` (the gateway's end) coalesces concurrent reads of one experiment into one
analysis, keeps each experiment's latest result with its time, and answers within its
timeout: a fresh result (as the analysis gives it: the same log, the same JSON), else the
latest one with `stale: {"age_s", "computed_at", "reason"}`, else 503. A read may accept
the latest result up to `max_age_s` old instead (HTTP's `Cache-Control: max-age`). An
analysis past the timeout is ended (the child is killed and started again at the next
read), so a runaway analysis never holds the database or a core.

The budget: analyses take at most `budget` of a core (default a quarter, shared by the
host's workers). After an analysis that cost C seconds, the next one starts no sooner
than C (1 - budget) / budget later; reads that come in between wait for it (all of them
share it), so every read still gets an analysis that began after it came, and a client
reading in a loop cannot keep a core busy: on a 1M-row log (6 s) the analyst runs at
most 6 s in 24. Small logs pay nothing visible (a 50 ms analysis: the next may start 150
ms later). The pause is at most half the read timeout (30 s), so a read never waits out
its timeout behind a pause alone. C is the child's CPU time on SQLite (the database
works in the child; a child held back by busier processes is charged what it used, not
how long it waited), the wall time on PostgreSQL (the server does the work, out of the
child's sight; the wall time bounds it).

The child starts at normal priority (its imports and its connection), then runs as
background work, Linux `SCHED_IDLE`: any serving process that wakes preempts it at once
(at nice 19 alone, 2 workers on the real stack, 1M-row log: the gateway's p99 rose
1.34-1.45x and its throughput fell to 0.84-0.89x, `benchmarks.experiments.analysis_stack`;
on this Linux 6.18 a waking task does not always preempt a running nice-19 one at once).
`SCHED_IDLE` alone starves while every core is busy (a whole suite under a two-core busy
loop never finished its analyses), so an analysis that runs past 4x the last one's cost
(and 2 s) moves to nice 19, never starved, then 10, then 0 (where allowed) until it is
answered (`_escalate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO

from gateway.core.errors import GatewayError
from gateway.experiments.log.process import end_child
from gateway.experiments.log.records import Event

logger = logging.getLogger(__name__)
HEADER = struct.Struct("!I")
Timed = tuple[dict[str, Any], float]  # a result and when it was computed
Key = tuple[str, float | None, bool]  # experiment, since, with its history
_START_S = 30.0  # a cold interpreter on a busy machine (numpy, pydantic)
ANALYSIS_TIMEOUT_S = 60.0
ANALYSIS_BUDGET = 0.25  # the analyses' share of the wall time, at most
NICENESS = 19  # the lowest CPU priority (nice(2))
# SQLite's sorter threads in the analyst (`PRAGMA threads`): 10M rows 53.5 -> 39.0 s, the
# same peak RSS (150 MiB), measured on 2 cores; the threads are background work as well.
SQLITE_THREADS = 2
# The budget's pause is at most this share of a read's timeout, so that a read that comes
# during a pause still gets an analysis (analyses longer than a few seconds then take a
# little more than the budget: C / (C + 30 s)).
_MAX_PAUSE = 0.5
_ESCALATE_MIN_S = 2.0  # an analysis longer than this (wall) and than ...
_ESCALATE_FACTOR = 4.0  # ... this many times the last one's cost leaves SCHED_IDLE
_ESCALATION = (NICENESS, 10, 0)  # nice, each step twice as long after the one before
READS = ("summary", "arm_counts")  # the log's reads that grow with it, besides analyses


class AnalysisUnavailable(GatewayError):
    """No analysis within the timeout and none before it: 503 with `Retry-After` (RFC
    9110 10.2.3, whole seconds)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, retry_after_s: float = 5.0) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class Analyst:
    """The gateway's end of the analysis process.

    Args:
        database_url: as `experiments.database_url` (None = SQLite in `data_dir`).
        data_dir: the SQLite log's folder.
        timeout_s: how long a read waits for a fresh analysis.
        clock: seconds since the epoch (results' `computed_at`).
        budget: the analyses' share of the wall time, in (0, 1] (see the module).
        monotonic: seconds (the budget's clock).
        parallel_workers: PostgreSQL's parallel workers per analysis query (`analysis_session`).
    """

    def __init__(
        self,
        database_url: str | None,
        data_dir: Path | None,
        timeout_s: float = ANALYSIS_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        budget: float = ANALYSIS_BUDGET,
        monotonic: Callable[[], float] = time.monotonic,
        parallel_workers: int = 0,
    ) -> None:
        if not 0 < budget <= 1:
            raise ValueError(f"analysis budget: {budget} is not in (0, 1]")
        target = {
            "database_url": database_url,
            "data_dir": data_dir and str(data_dir),
            "parallel_workers": parallel_workers,
        }
        self._command = (sys.executable, "-m", "gateway.experiments.analyst", json.dumps(target))
        url = database_url or ""
        self._charge_cpu = not url or url.startswith("sqlite")  # the work is in the child
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one analysis at a time through the pipe
        self._running: dict[Key, asyncio.Task[Timed]] = {}
        self._latest: dict[Key, tuple[dict[str, Any], float]] = {}
        self.timeout_s, self._clock = timeout_s, clock
        self.budget, self._monotonic = budget, monotonic
        self._not_before = 0.0  # (monotonic) the budget's earliest start of the next analysis
        self._asking = False  # the child is working on a request
        self._escalated = False  # the child runs at a normal priority, not idle
        self._escalation: asyncio.TimerHandle | None = None  # the next step up
        self._last_cost = 0.0  # the last request's cost (seconds, as charged)
        self._generation = 0  # children ended so far (see `_start`)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def computed_at(self, experiment: str, since: float | None = None) -> float | None:
        """When the latest full analysis (with its history) of (`experiment`, `since`) was
        computed (s since the epoch), or None."""
        latest = self._latest.get((experiment, since, True))
        return None if latest is None else latest[1]

    async def analyse(
        self,
        experiment: str,
        since: float | None,
        events: Sequence[Event],
        max_age_s: float | None = None,
        history: bool = True,
    ) -> dict[str, Any]:
        """The analysis of `experiment` (rows at or after `since`; its `events`, from the
        control plane), fresh within the timeout; else the latest with `stale` (its
        `age_s`, `computed_at` in s since the epoch, and why). `max_age_s`: the latest
        result is enough when at most this old (seconds; None: a fresh one). `history`
        False: without the history's looks (`analyse_store`).

        Raises:
            AnalysisUnavailable: neither a fresh nor an earlier result (503).
        """
        key = (experiment, since, history)
        latest = self._latest.get(key)
        if max_age_s is not None and latest and self._clock() - latest[1] <= max_age_s:
            return latest[0]
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.create_task(self._fresh(key, events))
            task.add_done_callback(lambda done: self._done(key, done))
        try:
            result, _ = await asyncio.wait_for(asyncio.shield(task), self.timeout_s)
        except TimeoutError:
            if self._asking:  # a runaway analysis (not the budget's wait): end it
                if self._running.get(key) is task:  # later reads start a new one
                    del self._running[key]
                await self._kill()
            return self._earlier(key, f"no analysis within {self.timeout_s:g} s")
        except AnalysisUnavailable as exc:
            return self._earlier(key, exc.message)
        return result

    def _done(self, key: Key, task: asyncio.Task[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: a waiter that timed out has answered already

    def _earlier(self, key: Key, why: str) -> dict[str, Any]:
        if key not in self._latest:
            raise AnalysisUnavailable(f"no analysis of {key[0]} yet: {why}")
        result, at = self._latest[key]
        age = round(max(0.0, self._clock() - at), 3)
        logger.warning("experiments: %s; answering the analysis of %.1f s ago", why, age)
        return {**result, "stale": {"age_s": age, "computed_at": at, "reason": why}}

    async def _fresh(self, key: Key, events: Sequence[Event]) -> Timed:
        request = {
            "experiment": key[0],
            "since": key[1],
            "events": [event.as_dict() for event in events],
            "history": key[2],
        }
        async with self._lock:
            pause = self._not_before - self._monotonic()
            if pause > 0:  # the budget: a rate, not a synchronisation
                await asyncio.sleep(pause)
            answer = await self._timed(request)
        if "error" in answer:
            raise AnalysisUnavailable(f"the analysis failed: {answer['error']}")
        at = self._clock()
        self._latest[key] = (answer["result"], at)
        return answer["result"], at

    async def read(self, name: str, *args: Any) -> Any:
        """One of the log's `READS` (`name` is the `LogStore` method), in the analyst
        process: it waits for a running analysis, not for the budget's pause, and its
        time counts in the budget.

        Raises:
            AnalysisUnavailable: the read failed or the process ended (503).
        """
        if name not in READS:
            raise ValueError(f"analyst: {name!r} is not one of {READS}")
        async with self._lock:
            try:
                answer = await asyncio.wait_for(
                    self._timed({"read": name, "args": list(args)}), self.timeout_s
                )
            except TimeoutError:
                await self._kill()  # its answer would come after the next request's
                why = f"the log's {name} took over {self.timeout_s:g} s"
                raise AnalysisUnavailable(why) from None
        if "error" in answer:
            raise AnalysisUnavailable(f"the log's {name} failed: {answer['error']}")
        return answer["result"]

    async def _timed(self, request: dict[str, Any]) -> dict[str, Any]:
        """`_ask`, its cost charged to the budget (see the module)."""
        started = self._monotonic()
        self._asking = True
        answer: dict[str, Any] = {}
        try:
            answer = await self._ask(request)
            return answer
        finally:
            self._asking = False
            took = self._monotonic() - started
            if self._charge_cpu and isinstance(answer.get("cpu_s"), int | float):
                took = min(took, float(answer["cpu_s"]))
            self._last_cost = took
            pause = min(took * (1 - self.budget) / self.budget, self.timeout_s * _MAX_PAUSE)
            self._not_before = self._monotonic() + pause

    def _escalate(self, level: int = 0, after_s: float = _ESCALATE_MIN_S) -> None:
        """The child, at `SCHED_IDLE`, got no CPU for a while (every core busy): it moves
        to normal scheduling at nice 19, then (twice as long later, where the process
        may raise a priority: root, or `RLIMIT_NICE`) 10, then 0, until this request is
        answered: an analysis always ends, and the later the busier the host."""
        if self._proc is None or self._proc.returncode is not None:
            return
        nice = _ESCALATION[level]
        lowest_normal_priority(self._proc.pid, nice)
        self._escalated = True
        logger.info("analyst: no idle CPU; the analysis goes on at nice %d", nice)
        if level + 1 < len(_ESCALATION):
            self._escalation = asyncio.get_running_loop().call_later(
                2 * after_s, self._escalate, level + 1, 2 * after_s
            )

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._proc is None or self._proc.returncode is not None:
            await self._start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        payload = json.dumps(request).encode()
        # Armed once the child is ready (it starts at normal priority, then goes idle).
        first = max(_ESCALATE_MIN_S, _ESCALATE_FACTOR * self._last_cost)
        self._escalation = asyncio.get_running_loop().call_later(first, self._escalate, 0, first)
        try:
            proc.stdin.write(HEADER.pack(len(payload)) + payload)
            await proc.stdin.drain()
            return await _read_frame(proc.stdout)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            await self._kill()
            raise AnalysisUnavailable("the analysis process ended") from exc
        finally:
            if self._escalation is not None:
                self._escalation.cancel()
            if self._escalated and proc.returncode is None:
                idle_priority(proc.pid)  # back to background work for the next one
            self._escalated = False

    async def _start(self) -> None:
        generation = self._generation
        proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        if generation != self._generation:  # a read timed out while it started: end it
            proc.kill()
            await proc.wait()
            raise AnalysisUnavailable("the analysis was ended (a read timed out)")
        self._proc = proc
        assert self._proc.stdout is not None
        try:
            await asyncio.wait_for(_read_frame(self._proc.stdout), _START_S)
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            await self._kill()
            raise AnalysisUnavailable("the analysis process did not start") from exc

    async def _kill(self) -> None:
        self._generation += 1  # a child still starting is ended as soon as it exists
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def aclose(self, timeout: float = 5.0) -> None:
        """End the analysis process (killed after `timeout`)."""
        for task in list(self._running.values()):
            task.cancel()
        proc, self._proc = self._proc, None
        await end_child(proc, timeout)


async def _read_frame(stream: asyncio.StreamReader) -> dict[str, Any]:
    size = HEADER.unpack(await stream.readexactly(HEADER.size))[0]
    answer: dict[str, Any] = json.loads(await stream.readexactly(size))
    return answer


def _write_frame(sink: BinaryIO, message: dict[str, Any]) -> None:
    payload = json.dumps(message).encode()
    sink.write(HEADER.pack(len(payload)) + payload)
    sink.flush()


def serve(
    store: Any, source: BinaryIO, sink: BinaryIO, before: Callable[[], None] | None = None
) -> None:
    """Answer every request frame of `source` on `sink`, until EOF (`before`: called
    before each request, `BackendPriority.follow`)."""
    from gateway.experiments.stats.analysis import analyse_store

    while header := source.read(HEADER.size):
        if len(header) < HEADER.size:
            return
        request = json.loads(source.read(HEADER.unpack(header)[0]))
        if before is not None:
            before()
        answer: dict[str, Any]
        cpu = time.process_time()
        try:
            if request.get("read") in READS:
                result = getattr(store, request["read"])(*request["args"])
            else:
                events = [Event(**event) for event in request["events"]]
                since, history = request["since"], request.get("history", True)
                result = analyse_store(store, request["experiment"], since, events, history)
            answer = {"result": result, "cpu_s": time.process_time() - cpu}
        except Exception as exc:  # the gateway answers 503 (or the latest result)
            logger.exception("%s failed", request.get("read") or request.get("experiment"))
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        _write_frame(sink, answer)


def idle_priority(pid: int = 0) -> None:
    """Background work (`pid` 0: this process): Linux `SCHED_IDLE`, which any serving
    process preempts at once when it wakes; where it is missing, nice 19."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, NICENESS)


def lowest_normal_priority(pid: int, nice: int = NICENESS) -> None:
    """`SCHED_OTHER` at `nice` (19: the lowest priority that is never starved outright;
    an unprivileged process may move its child back from `SCHED_IDLE` to it, sched(7)
    "since Linux 2.6.39"; a lower nice needs root or `RLIMIT_NICE`, else it stays)."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)


class BackendPriority:
    """The analyst's PostgreSQL backend kept at the analyst's own CPU priority, when it is
    a process of this host (a database beside the gateway: `dualserve up` with a local
    PostgreSQL, the benchmarks). The SQL of an analysis is the analysis's work: on
    PostgreSQL most of its CPU is the backend's, and a backend at normal priority takes
    the serving processes' CPU that the analyst's `SCHED_IDLE` gives back (the real
    stack, 2 workers: throughput 0.89-0.91x without this). A thread applies the
    analyst's priority, as the gateway's escalation moves it, to the backend every
    `period_s`; `follow` finds the backend again before each request (a reconnection
    starts another). A backend of another host or PID namespace, or one this user may
    not reprioritise (another user, without `CAP_SYS_NICE`), is left as it is.

    Args:
        db: the analyst's PostgreSQL database.
        period_s: how often the backend follows the analyst's priority.
    """

    def __init__(self, db: Any, period_s: float = 0.5) -> None:
        self._db, self._period_s = db, period_s
        self.pid: int | None = None
        self._applied: tuple[int, int, int] | None = None  # pid, policy, nice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-priority", daemon=True)

    def start(self) -> None:
        self.follow()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def follow(self) -> None:
        """Find the connection's backend (this host's, a `postgres` process) and apply."""
        try:
            info = self._db.conn.info
            pid, host = int(info.backend_pid), str(info.host or "")
        except Exception:  # unavailable now: the next request tries again
            return
        local = host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")
        self.pid = pid if local and _is_postgres(pid) else None
        self._apply()

    def _apply(self) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(OSError, AttributeError):
            policy, nice = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
            if self._applied == (pid, policy, nice):
                return
            if policy == os.SCHED_IDLE:
                idle_priority(pid)
            else:
                lowest_normal_priority(pid, nice)
            self._applied = (pid, policy, nice)

    def _run(self) -> None:
        while not self._stop.wait(self._period_s):
            self._apply()


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a PostgreSQL process of this PID namespace (its name)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def analysis_session(parallel_workers: int) -> Any:
    """The analyst's PostgreSQL session: statements up to the analysis's timeout; no JIT
    (it compiled each aggregate for 1.7 s of CPU, more than it saved: 1M rows 4.9 s with
    it, 4.4 s without); `parallel_workers` per query (0: an analysis stays on one core,
    so its wall time, which the budget charges, is its CPU time, and a gateway on the
    database's host keeps the other cores: 1M rows 5.9 s, 10M 52 s; 2 workers: 4.4 s,
    29 s, three processes' CPU)."""
    from gateway.control.database import StoreTimeouts

    settings = (("jit", "off"), ("max_parallel_workers_per_gather", str(parallel_workers)))
    return StoreTimeouts(statement_s=ANALYSIS_TIMEOUT_S, settings=settings)


def main(argv: list[str]) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # the gateway's drain decides when we end
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s analyst %(message)s")
    from gateway.control.database import open_database
    from gateway.experiments.log.store import SqlLogStore

    target = json.loads(argv[0])
    folder = None if target["data_dir"] is None else Path(target["data_dir"])
    timeouts = analysis_session(int(target.get("parallel_workers", 0)))
    db = open_database(target["database_url"], folder, timeouts)
    if db.placeholder == "?":  # SQLite: its sorter may use threads (background work too)
        db.fetch(f"PRAGMA threads = {SQLITE_THREADS}")
    store = SqlLogStore(db)
    idle_priority()  # after the imports and the connection, which the start waits for
    backend = BackendPriority(db) if db.postgres else None
    if backend is not None:
        backend.start()
    try:
        _write_frame(sys.stdout.buffer, {"ready": True})
        serve(
            store, sys.stdin.buffer, sys.stdout.buffer, None if backend is None else backend.follow
        )
    finally:
        if backend is not None:
            backend.stop()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
