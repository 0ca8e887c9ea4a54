"""Clients that keep connections open while the gateway stops (issue 24).

The gateway runs alone (`python -m gateway`, 1 or 2 workers, its backends unreachable),
and 16 closed-loop clients share one keep-alive pool of aiohttp's or httpx's, each
POSTing a prediction (answered 503 by the gateway's own code path: any HTTP answer is an
answer; a POST, so that no client library resends it by itself). SIGTERM goes to the gateway mid-load. A request either
got its answer or failed; a failure to connect means the listener was closed before the
request was sent, and is the only failure allowed. Before this, each SIGTERM reset 16-17
requests of aiohttp's pool (`ClientOSError`): idle connections were closed as clients
sent on them, and the prediction log's writer process had inherited the listening socket,
so connections queued there after the drain were reset when it exited. Prints what each
client saw.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest
import yaml

from gateway.processes.workers import read_workers
from tests.unit.gateway.gateway_fakes import make_store

pytestmark = pytest.mark.slow
CLIENTS = 16
CONNECT_FAILED = "connect"
BODY = {"instances": [[0.0, 0.0, 0.0, 0.0]]}


def _start_alone(
    tmp_path: Path, workers: int, edge: dict[str, float] | None = None
) -> subprocess.Popen[bytes]:
    store = make_store(tmp_path / "store")
    config = {
        "port": 0,
        "workers": workers,
        "model_store": str(store),
        "experiments": {"data_dir": str(tmp_path / "data")},
        "tensorflow": {"transport": "rest", "rest": ["http://127.0.0.1:1"]},
        "pytorch": {"transport": "rest", "rest": ["http://127.0.0.1:1"]},
        "drain": {"delay_s": 0.5, "idle_close_s": 0.5},
        "edge": edge or {},
    }
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "gateway", "--config", "gateway.yaml", "--run-dir", "."]
    with open(tmp_path / "gateway.log", "wb") as log:
        return subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)


def _port(tmp_path: Path, gateway: subprocess.Popen[bytes], workers: int) -> int:
    deadline = time.monotonic() + 120
    while (record := read_workers(tmp_path)) is None or len(record["workers"]) < workers:
        assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)  # polling the gateway's record, bounded by `deadline`
    return int(record["port"])


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    workers = int(request.param)
    process = _start_alone(tmp_path, workers)
    try:
        yield process, _port(tmp_path, process, workers)
    finally:
        process.kill()
        process.wait(timeout=30)


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    after_signal: Counter[str] = field(default_factory=Counter)
    signalled: threading.Event = field(default_factory=threading.Event)

    def record(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if self.signalled.is_set():
            self.after_signal[outcome] += 1

    @property
    def answered(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.isdigit())


async def _aiohttp_load(url: str, tally: Tally, stop: threading.Event) -> None:
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> str:
            try:
                async with session.post(url, json=BODY) as reply:
                    await reply.read()
                    return str(reply.status)
            except aiohttp.ClientConnectorError:
                return CONNECT_FAILED
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__

        await _closed_loop(one, tally, stop)


async def _httpx_load(url: str, tally: Tally, stop: threading.Event) -> None:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=15) as client:

        async def one() -> str:
            try:
                reply = await client.post(url, json=BODY)
                return str(reply.status_code)
            except httpx.ConnectError:
                return CONNECT_FAILED
            except httpx.HTTPError as exc:
                return type(exc).__name__

        await _closed_loop(one, tally, stop)


async def _closed_loop(
    one: Callable[[], Awaitable[str]], tally: Tally, stop: threading.Event
) -> None:
    async def client() -> None:
        while not stop.is_set():
            outcome = await one()
            tally.record(outcome)
            if outcome == CONNECT_FAILED:
                return  # the listener is closed: this client is done

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


@pytest.mark.parametrize("pool", ["aiohttp", "httpx"])
def test_sigterm_resets_no_request_of_keep_alive_pools(
    gateway: tuple[subprocess.Popen[bytes], int], pool: str, figures: Callable[[str], None]
) -> None:
    process, port = gateway
    url = f"http://127.0.0.1:{port}/v1/models/toy:predict"
    tally, stop = Tally(), threading.Event()
    load = _aiohttp_load if pool == "aiohttp" else _httpx_load
    runner = threading.Thread(target=lambda: asyncio.run(load(url, tally, stop)), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while tally.answered < 500:  # warm: every client's connection kept alive
            assert runner.is_alive() and time.monotonic() < deadline, dict(tally.outcomes)
            stop.wait(0.02)
        tally.signalled.set()
        process.send_signal(signal.SIGTERM)
        # one process re-raises the signal once drained (uvicorn), a supervisor exits 0
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop.set()
        runner.join(timeout=30)
    failed = {k: n for k, n in tally.outcomes.items() if not (k.isdigit() or k == CONNECT_FAILED)}
    figures(
        f"\n{pool}, SIGTERM: {dict(tally.outcomes)} in all; after the signal"
        f" {dict(tally.after_signal)}"
    )
    assert failed == {}
    assert sum(n for k, n in tally.after_signal.items() if k.isdigit()) > 0  # served while draining


# Bounds at the edge: a 64 MiB header, 2,000 silent connections and 200 slowloris
# connections against one worker, while a normal keep-alive client goes on.

EDGE = {"max_connections": 256, "head_timeout_s": 2.0, "max_header_bytes": 32 * 1024}
SILENT = 2000
SLOWLORIS = 200


@pytest.fixture
def bounded_gateway(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    process = _start_alone(tmp_path, 1, edge=EDGE)
    try:
        yield process, _port(tmp_path, process, 1)
    finally:
        process.kill()
        process.wait(timeout=30)


def _p99_ms(client: httpx.Client, requests: int) -> tuple[float, list[int]]:
    latencies, statuses = [], []
    for _ in range(requests):
        started = time.perf_counter()
        statuses.append(client.get("/healthz").status_code)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    return latencies[int(0.99 * (len(latencies) - 1))] * 1000, statuses


def _huge_header(port: int, outcome: dict[str, object]) -> None:
    total, sent, piece = 64 * 1024 * 1024, 0, b"a" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
            while sent < total:
                sent += sock.send(piece)
        except OSError:
            pass
        try:
            outcome["answer"] = sock.recv(200)
        except OSError as exc:
            outcome["answer"] = type(exc).__name__.encode()
    outcome["sent"] = sent


def _closed_within(sockets: list[socket.socket], seconds: float) -> int:
    """How many of `sockets` the server closed (EOF or reset) within `seconds`, each read
    bounded by what is left of that time."""
    deadline, closed = time.monotonic() + seconds, 0
    for sock in sockets:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            while sock.recv(4096):
                pass  # a slowloris connection's 408 comes first
            closed += 1
        except ConnectionResetError:
            closed += 1
        except TimeoutError:
            pass
    return closed


def test_huge_headers_silent_and_slowloris_connections_are_bounded(
    bounded_gateway: tuple[subprocess.Popen[bytes], int], figures: Callable[[str], None]
) -> None:
    process, port = bounded_gateway
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        alone, _ = _p99_ms(client, 300)
        huge: dict[str, object] = {}
        sender = threading.Thread(target=_huge_header, args=(port, huge), daemon=True)
        sender.start()
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(SILENT)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOWLORIS)]
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # the blank line never comes
        attacked, statuses = _p99_ms(client, 300)
        sender.join(timeout=60)
        bound = EDGE["head_timeout_s"] + 5  # the head timeout, plus sweeps on a busy machine
        silent_closed = _closed_within(silent, bound)
        slow_answers = []
        for sock in slow:
            sock.settimeout(bound)
            try:
                slow_answers.append(sock.recv(64).split(b" ", 2)[1])
            except (OSError, IndexError):
                slow_answers.append(b"closed")
        after, _ = _p99_ms(client, 100)
        for sock in silent + slow:
            sock.close()
    figures(
        f"\nnormal client p99: {alone:.2f} ms alone, {attacked:.2f} ms under attack,"
        f" {after:.2f} ms after; 64 MiB header: {int(huge['sent']) / 2**20:.1f} MiB sent,"  # type: ignore[call-overload]
        f" answer {huge['answer'][:40]!r}; {silent_closed} of {SILENT} silent connections"  # type: ignore[index]
        f" closed; slowloris answers {dict(Counter(slow_answers))}"
    )
    assert statuses == [200] * len(statuses)  # the normal client was never refused
    assert int(huge["sent"]) < 64 * 1024 * 1024  # type: ignore[call-overload]
    assert silent_closed == SILENT
    assert set(slow_answers) <= {b"408", b"closed"} and b"408" in slow_answers
    assert process.poll() is None
