"""The REST wire's HTTP/1.1 client: keep-alive connections to one replica, each request
written in one piece, each answer parsed by httptools (the parser uvicorn runs on).

Why not aiohttp's `ClientSession`: per call it builds a request and a response object,
header multidicts, a timeout handle and a writer task. Forwarding one digit to the TF
server at 16 concurrent calls, aiohttp spent 105 us of CPU per call and this client 34 us
(325 vs 108 us one call at a time; in-process, interleaved rounds, same session pool
size): about a sixth of the gateway's whole CPU per request then (0.45 ms at c=16).

What it does: `Content-Length` bodies out; `Content-Length` or chunked answers in (as
every keep-alive answer is framed); connections reused while the backend keeps them
alive and at most `max_connections` of them (callers past it wait, within their own
deadline). Interim 1xx answers (103 Early Hints, as a proxy may send; RFC 9110 section
15.2) are skipped and the final answer is read; an answer to HEAD ends at its headers
(RFC 9110 section 9.3.2: it has no body whatever its Content-Length says). An answer's
head may hold at most `max_header_bytes` and its body `max_body_bytes` (`ProtocolError`
past either, the connection closed: nothing larger is ever buffered). `tls` is the
`ssl.SSLContext` for https replicas (CA file, client certificate: `tls_context`). What
it does not: redirects, cookies, proxies, `Expect: 100-continue`, or answers delimited
by closing the connection. Errors are the standard library's (`TimeoutError`,
`ConnectionError`, `OSError`, `ssl.SSLError`) or `ProtocolError`; the wire turns them
into gateway errors (`failures.from_transport`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httptools

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_HEADER_BYTES = 64 * 1024
"""An answer's status line and headers at most (a backend's are a few hundred bytes)."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""An answer's body at most, when the pool is not told (the gRPC wire's receive limit)."""


class ProtocolError(Exception):
    """The backend's bytes are not an HTTP/1.1 answer to the request sent."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time.

    Args:
        max_header_bytes: an answer's head at most (bytes read before its headers end).
        max_body_bytes: an answer's body at most.
    """

    def __init__(self, max_header_bytes: int, max_body_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._chunks: list[bytes] = []
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        self._head_read = 0  # read while the current answer's head was incomplete
        self._data = b""  # the read being parsed
        self._body_bytes = 0
        self._in_head = False
        self._head_only = False  # the request was HEAD: the answer ends at its headers
        self.keep_alive = False
        self.answered = False  # some byte of the current answer arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError("the backend closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: the connection is out of step
            self.close()
            return
        self.answered = True
        self._data = data  # for `on_headers_complete` (no `on_header`: 0.1 us a field)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            refused = exc.__context__
            if isinstance(refused, ProtocolError):  # raised by a callback: a limit
                self._refuse(str(refused))
            else:
                self._fail(ProtocolError(f"unreadable HTTP answer ({exc})"))
                self.close()
            return
        finally:
            self._data = b""
        if self._in_head:  # the head is not complete after this read
            self._head_read += len(data)
            if self._head_read > self._max_header_bytes:
                self._refuse(self._head_too_large())
        elif self._head_only and self._waiter is None:
            # HEAD: the parser still expects the body Content-Length announced; the next
            # bytes on this connection are the next answer's, so a fresh parser reads them
            self._parser = httptools.HttpResponseParser(self)
            self._head_only = False

    def _head_too_large(self) -> str:
        return f"the answer's head exceeds {self._max_header_bytes} bytes"

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_read + len(self._data) > self._max_header_bytes:  # maybe: measure
            end = self._data.find(b"\r\n\r\n")
            if end < 0 or self._head_read + end + 4 > self._max_header_bytes:
                raise ProtocolError(self._head_too_large())
        if self._head_only and self._parser.get_status_code() >= 200:
            self.keep_alive = self._parser.should_keep_alive()
            self._settle()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_body_bytes:
            self._refuse(f"the answer's body exceeds {self._max_body_bytes} bytes")
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # 1xx: interim, the final answer follows
            self._chunks, self._body_bytes = [], 0
            self._in_head, self._head_read = True, 0
            return
        if self._head_only:
            return  # settled at its headers
        self.keep_alive = self._parser.should_keep_alive()
        self._settle()

    def _settle(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), body))

    def _refuse(self, why: str) -> None:
        self._chunks = []
        self._fail(ProtocolError(why))
        self.close()

    async def exchange(
        self, data: bytes, deadline: float, head_only: bool = False
    ) -> tuple[int, bytes]:
        """Write `data` (a whole request) and wait for the whole answer until `deadline`
        (the loop's clock); `head_only`: the request is HEAD."""
        assert self.transport is not None and self._waiter is None
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self.keep_alive = self.answered = False
        self._in_head, self._head_read, self._body_bytes = True, 0, 0
        self._head_only = head_only
        self.transport.write(data)
        timer = loop.call_at(deadline, self._expire)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self) -> None:
        self._fail(TimeoutError())

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to one replica (`url`: `http(s)://host[:port][/prefix]`).

    Args:
        url: the replica's base URL; request paths are appended to its path.
        max_connections: connections (so calls in flight) at most.
        max_header_bytes: an answer's status line and headers at most, in bytes.
        max_body_bytes: an answer's body at most, in bytes.
        tls: the TLS context for an https URL (default: the system's CAs, no client
            certificate; see `tls_context`); ignored for http.

    Raises:
        ValueError: `url` is not an http or https URL with a host.
    """

    def __init__(
        self,
        url: str,
        max_connections: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: '{url}'")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        https = parts.scheme == "https"
        self._ssl = (tls or ssl.create_default_context()) if https else None
        self._prefix = parts.path.rstrip("/")
        self._host_line = f"Host: {parts.netloc}\r\n"
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False
        self._limits = (max_header_bytes, max_body_bytes)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float,
        more_headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, bytes]:
        """(status, body) of one request, all of it within `timeout` seconds; `more_headers`
        (name, value) pairs follow `headers` (the trace context, per call).

        Raises:
            TimeoutError: no whole answer in time (the connection is closed).
            OSError: the connection failed (`ConnectionError` when refused or reset).
            ProtocolError: the answer is not HTTP/1.1, or its head or body passes
                `max_header_bytes` or `max_body_bytes`.
            ssl.SSLError: the TLS handshake failed (an `OSError`).
            ValueError: a header name or value holds a line break.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = self._head(method, path, body, headers, more_headers)
        if self._slots.locked():  # every connection is busy: wait for one, in time
            await asyncio.wait_for(self._slots.acquire(), timeout)
        else:
            await self._slots.acquire()
        try:
            return await self._exchange(loop, method, data, deadline)
        finally:
            self._slots.release()

    async def _exchange(
        self, loop: asyncio.AbstractEventLoop, method: str, data: bytes, deadline: float
    ) -> tuple[int, bytes]:
        connection = self._reuse()
        head_only = method == "HEAD"
        if connection is not None and method in _IDEMPOTENT:
            try:
                return await self._run(connection, data, deadline, head_only)
            except ConnectionResetError:
                if connection.answered:
                    raise
            # The backend closed a kept-alive connection as the request left: an idempotent
            # request is sent again on a new one, once (RFC 9112 section 9.3.1, as aiohttp).
            connection = None
        if connection is None:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError()
            connection = await asyncio.wait_for(self._connect(loop), left)
        return await self._run(connection, data, deadline, head_only)

    async def _run(
        self, connection: _Connection, data: bytes, deadline: float, head_only: bool
    ) -> tuple[int, bytes]:
        try:
            answer = await connection.exchange(data, deadline, head_only)
        except BaseException:  # a half-done exchange leaves the connection out of step
            connection.close()
            raise
        if connection.keep_alive and not connection.lost and not self._closed:
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    def _reuse(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.lost:
                return connection
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        header_bytes, body_bytes = self._limits
        _, connection = await loop.create_connection(
            lambda: _Connection(header_bytes, body_bytes), self.host, self.port, ssl=self._ssl
        )
        return connection

    def _head(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        more_headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1\r\n", self._host_line]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if headers:
            _header_lines(lines, headers.items())
        if more_headers:
            _header_lines(lines, more_headers)
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        return head + body if body else head

    def close(self) -> None:
        """Close the idle connections (busy ones close when their call ends)."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()


def _header_lines(lines: list[str], headers: Iterable[tuple[str, str]]) -> None:
    for name, value in headers:
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}\r\n")


def tls_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """The TLS context for https replicas: server certificates checked against `ca_file`
    (default: the system's CAs) with host names checked, and `cert_file` / `key_file` (PEM)
    sent when the backend asks for a client certificate (mutual TLS).

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a file is not a PEM certificate or key (or they do not match).
    """
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context
