"""The REST listener's bounds and its drain: uvicorn's httptools protocol, bounded.

uvicorn with httptools buffers a request head of any size for as long as the client
likes, and keeps every connection a client opens (issue 24: a 64 MiB header answered 200
after 3.5-18 s of a worker's CPU; 1,000 silent and 200 slowloris connections held for
good). `BoundedHttpToolsProtocol` adds, per worker (`EdgeSettings`):

- `max_header_bytes`, `max_headers`: 431 Request Header Fields Too Large (RFC 6585
  section 5), `Connection: close`. Completed fields are counted as they are parsed; a head
  still incomplete is counted per chunk read, so no more than the limit plus one read
  (256 KiB under uvloop) is ever buffered.
- `head_timeout_s`: a request's line and headers must arrive within this long of its
  first byte, else 408 Request Timeout (RFC 9110 section 15.5.9) with `Connection: close`
  (nginx's `client_header_timeout`); a new connection that sends no byte within it is
  closed without an answer (there is no request to answer).
- `max_connections`: past it, the connection idle longest is closed first (with no
  request in flight, so nothing is lost); a new connection is closed at once when none is
  idle.

These are checked by one sweep per worker (every quarter of `head_timeout_s`, at most
1 s), not a timer per request: per request the protocol only notes when a head began
and when the connection went idle, in two insertion-ordered dicts.

`DrainingServer` closes the listener without resetting anyone (see `gateway.edge.drain`
for the order): connections the kernel completed but the worker had not accepted yet are
accepted first, the listening socket is closed right after, and idle connections close
only once they have been quiet for `drain.idle_close_s` with no byte in the kernel's
buffer; a request that arrives first is answered with `Connection: close`.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import functools
import json
import socket
import termios
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server, ServerState

from gateway.settings import DrainSettings, EdgeSettings

_settings: tuple[EdgeSettings, DrainSettings] = (EdgeSettings(), DrainSettings())


def configure(edge: EdgeSettings, drain: DrainSettings) -> None:
    """Set the bounds every `BoundedHttpToolsProtocol` of this process applies (called
    before the server starts: in the single process, or in each worker's app factory)."""
    global _settings
    _settings = (edge, drain)


class HeadRefused(Exception):
    """A request head broke a bound: `status` and the sentence naming the setting."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON `{"error": message}` body and `Connection:
    close` (the gateway's error body shape)."""
    body = json.dumps({"error": message}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class Guard:
    """One worker's view of its REST connections: who is idle since when, whose head is
    incomplete since when, and the sweep that enforces the time bounds."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.edge, self.drain = _settings
        self.loop = loop
        self.idle: dict[BoundedHttpToolsProtocol, float] = {}
        self.heads: dict[BoundedHttpToolsProtocol, float] = {}
        self.draining = False
        self.closed_idle = 0  # connections closed to make room or when silent
        self.refused = 0  # 408s and 431s sent
        self._sweeping: asyncio.TimerHandle | None = None

    def period(self) -> float:
        if self.draining:
            return self.drain.idle_close_s / 4
        return min(1.0, self.edge.head_timeout_s / 4)

    def start(self) -> None:
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(self.period(), self.sweep)

    def begin_drain(self) -> None:
        """The listener is closed: from now on idle connections close once quiet."""
        self.draining = True
        if self._sweeping is not None:
            self._sweeping.cancel()
        self._sweeping = self.loop.call_later(self.period(), self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        for conn, since in list(self.heads.items()):
            if now - since < self.edge.head_timeout_s:
                break  # ordered by start: the rest are younger
            conn.refuse(
                HeadRefused(
                    408,
                    f"the request head did not arrive within {self.edge.head_timeout_s:g} s"
                    " (edge.head_timeout_s)",
                )
            )
        quiet = self.drain.idle_close_s if self.draining else self.edge.head_timeout_s
        for conn, since in list(self.idle.items()):
            if now - since < quiet:
                break
            if conn.requests == 0 or self.draining:
                conn.close_if_quiet()
        self._sweeping = self.loop.call_later(self.period(), self.sweep)

    def admit(self, conn: BoundedHttpToolsProtocol, open_connections: int) -> None:
        """Make room for `conn`: close the connection idle longest, or `conn` itself."""
        if open_connections <= self.edge.max_connections:
            return
        victim = None
        for oldest in self.idle:  # oldest first; one that never sent a request first of all
            if oldest is conn or _buffered(oldest.transport):
                continue  # a request is arriving on it: not idle after all
            if oldest.requests == 0:
                victim = oldest
                break
            victim = victim or oldest
        (victim or conn).close_idle()

    def forget(self, conn: BoundedHttpToolsProtocol) -> None:
        self.idle.pop(conn, None)
        self.heads.pop(conn, None)


def guard_of(state: ServerState, loop: asyncio.AbstractEventLoop) -> Guard:
    """The worker's `Guard`, kept on uvicorn's `ServerState` (one per server)."""
    guard: Guard | None = getattr(state, "dualserve_guard", None)
    if guard is None:
        guard = Guard(loop)
        state.dualserve_guard = guard  # type: ignore[attr-defined]
    return guard


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above (`http=` this class's path)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard_of(self.server_state, self.loop)
        self.requests = 0
        self._head_fields = 0
        self._head_bytes = 0  # of the fields parsed so far
        self._head_read = 0  # of the chunks read while the head was incomplete
        self._ended = False  # a message ended in the chunk being parsed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        guard.idle[self] = self.loop.time()
        guard.start()
        guard.admit(self, len(self.connections))

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._ended = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadRefused):
                self.refuse(exc.__context__)
                return
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if not self._ended and self in self.guard.heads:  # a head still incomplete
            self._head_read += len(data)
            limit = self.guard.edge.max_header_bytes
            if self._head_read > limit:
                self.refuse(_too_large(limit))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        guard = self.guard
        guard.idle.pop(self, None)
        guard.heads[self] = self.loop.time()
        self.requests += 1
        self._head_fields = self._head_bytes = self._head_read = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, plus the two counts (no call to it: one call less per field)
        edge = self.guard.edge
        self._head_fields += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._head_fields > edge.max_headers:
            raise HeadRefused(
                431,
                f"the request has more than {edge.max_headers} header fields (edge.max_headers)",
            )
        if self._head_bytes > edge.max_header_bytes:
            raise _too_large(edge.max_header_bytes)
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.guard.heads.pop(self, None)
        super().on_headers_complete()
        if self.guard.draining:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._ended = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():
            self.guard.idle[self] = self.loop.time()

    def refuse(self, refused: HeadRefused) -> None:
        """Answer `refused` (408 or 431) and close; the head never reaches the app."""
        self.guard.refused += 1
        self.guard.forget(self)
        if not self.transport.is_closing():
            self.transport.write(refusal(refused.status, refused.message))
            self.transport.close()

    def close_idle(self) -> None:
        self.guard.closed_idle += 1
        self.guard.forget(self)
        self.transport.close()

    def close_if_quiet(self) -> None:
        """Close this idle connection unless a byte waits in the kernel's buffer (then the
        request it starts is read and answered first)."""
        if _buffered(self.transport) == 0:
            self.close_idle()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: a request in flight ends with `Connection: close`;
        an idle connection is left to the drain sweep (closed once quiet)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self not in self.guard.idle:
            self.guard.idle[self] = self.loop.time()


def _too_large(limit: int) -> HeadRefused:
    return HeadRefused(431, f"the request head exceeds {limit} bytes (edge.max_header_bytes)")


def _buffered(transport: asyncio.Transport) -> int:
    """Bytes received on the connection's socket not yet read (FIONREAD); 0 when unknown."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    size = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, size, True)
    except OSError:
        return 0
    return size[0]


class DrainingServer(Server):
    """uvicorn's `Server` whose shutdown resets no connection (see the module's text)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn binds the listener inheritable (for its workers); a child this process
        # starts (the prediction log's writer) would then hold it open after the drain,
        # and the connections the kernel queues there are reset when that child exits
        # (issue 24: one reset per client at every SIGTERM).
        for sock in sockets or []:
            sock.set_inheritable(False)
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        guard = guard_of(self.server_state, loop)
        guard.begin_drain()
        # uvloop closes a listener's own descriptor when its server closes: a copy keeps
        # the listener open until what waits in its backlog is accepted
        listeners = [sock.dup() for sock in sockets or []]
        for sock in sockets or []:
            sock.detach()  # its descriptor is the server's: uvloop closes it
        for server in self.servers:
            server.close()
        await asyncio.sleep(0)  # uvloop stops watching (and closes) its descriptors
        protocol_class: Any = self.config.http_protocol_class
        protocol = functools.partial(
            protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        for sock in listeners:
            pending = accept_pending(sock)  # then `sock` is closed
            for accepted in pending:
                await loop.connect_accepted_socket(protocol, accepted)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                await self._wait_tasks_to_complete()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


def accept_pending(sock: socket.socket) -> list[socket.socket]:
    """Accept every connection waiting in `sock`'s backlog, then close `sock`, with no
    await in between: closing a listener resets the connections it has not accepted, and
    a client may already have sent its request on one."""
    accepted: list[socket.socket] = []
    try:
        sock.setblocking(False)
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            conn.setblocking(False)
            accepted.append(conn)
    except OSError:
        pass  # not listening (any more): nothing waits
    finally:
        sock.close()
    return accepted


PROTOCOL = "gateway.processes.connections:BoundedHttpToolsProtocol"
"""uvicorn's `http=` for the gateway."""
