"""The REST wire's HTTP/1.1 client against loopback servers: an aiohttp server (a real
HTTP/1.1 implementation) and raw sockets that answer with hand-written bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from backends.process import free_port
from gateway.upstreams.transports.http1 import Http1Pool, ProtocolError
from tests.unit.gateway_fakes import serve_aiohttp


@asynccontextmanager
async def aiohttp_server(peers: set[int]) -> AsyncIterator[str]:
    """Echoes method, path, a header and the body; records each connection's client port."""

    async def echo(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        if request.path == "/slow":
            await asyncio.sleep(0.3)
        body = await request.read()
        text = f"{request.method} {request.path_qs} {request.headers.get('X-Id')} ".encode()
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (text, body, b"!"):
                await response.write(part)
            await response.write_eof()
            return response
        return web.Response(body=text + body, status=404 if request.path.endswith("/nope") else 200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    async with serve_aiohttp(app) as url:
        yield url


@asynccontextmanager
async def raw_server(answer: bytes, close: bool) -> AsyncIterator[str]:
    """Reads one request head, writes `answer`, then closes the connection or idles."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if close:
            writer.close()
        else:
            await reader.read()  # until the client goes

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_requests_round_trip_on_one_kept_alive_connection() -> None:
    async def go() -> None:
        peers: set[int] = set()
        async with aiohttp_server(peers) as url:
            pool = Http1Pool(url + "/base/", max_connections=4)
            for i in range(5):
                status, body = await pool.request("POST", f"/p?i={i}", b"xyz", {"X-Id": "7"}, 2.0)
                assert (status, body) == (200, f"POST /base/p?i={i} 7 xyz".encode())
            status, body = await pool.request("GET", "/nope", None, None, 2.0)
            assert (status, body) == (404, b"GET /base/nope None ")
            pool.close()
        assert len(peers) == 1  # sequential calls reuse the one connection

    run(go)


def test_chunked_answers_are_read_whole() -> None:
    async def go() -> None:
        async with aiohttp_server(set()) as url:
            pool = Http1Pool(url, max_connections=1)
            assert await pool.request("PUT", "/chunked", b"ab", None, 2.0) == (
                200,
                b"PUT /chunked None ab!",
            )
            pool.close()

    run(go)


def test_concurrent_calls_share_at_most_max_connections() -> None:
    async def go() -> None:
        peers: set[int] = set()
        async with aiohttp_server(peers) as url:
            pool = Http1Pool(url, max_connections=3)
            answers = await asyncio.gather(
                *(pool.request("POST", "/slow", b"", None, 5.0) for _ in range(9))
            )
            pool.close()
        assert [status for status, _ in answers] == [200] * 9
        assert len(peers) == 3

    run(go)


def test_a_slow_answer_times_out_and_its_connection_is_not_reused() -> None:
    async def go() -> None:
        peers: set[int] = set()
        async with aiohttp_server(peers) as url:
            pool = Http1Pool(url, max_connections=2)
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/slow", None, None, 0.05)
            assert await pool.request("GET", "/x", None, None, 2.0) == (200, b"GET /x None ")
            pool.close()
        assert len(peers) == 2

    run(go)


def test_waiting_for_a_busy_pool_counts_against_the_deadline() -> None:
    async def go() -> None:
        async with aiohttp_server(set()) as url:
            pool = Http1Pool(url, max_connections=1)
            busy = asyncio.ensure_future(pool.request("GET", "/slow", None, None, 5.0))
            await until(pool._slots.locked)  # the first call took the one connection
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/x", None, None, 0.05)
            assert (await busy)[0] == 200
            pool.close()

    run(go)


def test_a_connection_closed_mid_answer_is_a_connection_error() -> None:
    async def go() -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly"
        async with raw_server(answer, close=True) as url:
            with pytest.raises(ConnectionResetError):
                await Http1Pool(url, 1).request("GET", "/", None, None, 2.0)

    run(go)


def test_garbage_is_a_protocol_error() -> None:
    async def go() -> None:
        async with raw_server(b"SSH-2.0-OpenSSH\r\n\r\n", close=False) as url:
            with pytest.raises(ProtocolError, match="unreadable HTTP answer"):
                await Http1Pool(url, 1).request("GET", "/", None, None, 2.0)

    run(go)


def test_a_refused_connection_is_a_connection_error() -> None:
    async def go() -> None:
        with pytest.raises(ConnectionRefusedError):
            await Http1Pool(f"http://127.0.0.1:{free_port()}", 1).request(
                "GET", "/", None, None, 2.0
            )

    run(go)


def test_connection_close_answers_are_not_reused() -> None:
    async def go() -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        async with raw_server(answer, close=False) as url:
            pool = Http1Pool(url, 1)
            assert await pool.request("GET", "/", None, None, 2.0) == (200, b"ok")
            assert await pool.request("GET", "/", None, None, 2.0) == (200, b"ok")
            assert pool._idle == []

    run(go)


@pytest.mark.parametrize("headers", [{"X-Id": "a\r\nEvil: 1"}, {"X\nId": "a"}])
def test_header_line_breaks_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        run(lambda: Http1Pool("http://127.0.0.1:1", 1).request("GET", "/", None, headers, 1.0))


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8500", "http://"])
def test_only_http_base_urls(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool(url, 1)


@asynccontextmanager
async def closes_second_request(connections: list[int]) -> AsyncIterator[str]:
    """Answers the first request of each connection (kept alive), then closes the
    connection when its second request arrives, answering nothing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("POST", False)])
def test_a_kept_alive_connection_closed_unanswered_is_retried_only_if_idempotent(
    method: str, retried: bool
) -> None:
    async def go() -> None:
        connections: list[int] = []
        async with closes_second_request(connections) as url:
            pool = Http1Pool(url, 1)
            assert await pool.request(method, "/", b"", None, 2.0) == (200, b"ok")
            if retried:
                assert await pool.request(method, "/", b"", None, 2.0) == (200, b"ok")
            else:  # it may have reached the backend: never sent twice
                with pytest.raises(ConnectionResetError):
                    await pool.request(method, "/", b"", None, 2.0)
            pool.close()
        assert len(connections) == (2 if retried else 1)

    run(go)
