"""Reading a prediction body from its ASGI messages: joined chunks, the size limit, a client
that leaves (408) or stalls (408 after limits.body_timeout_s), and a cancellation that is
not the body timer's stays a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from gateway.core.errors import PayloadTooLarge, RequestTimeout
from gateway.edge.security_settings import LimitsSettings
from gateway.protocols.rest.http import read_body

Message = dict[str, Any]


def _request(
    messages: list[Message],
    headers: tuple[tuple[bytes, bytes], ...] = (),
    stall: bool = False,
    stalled: asyncio.Event | None = None,
) -> Request:
    """A request whose receive() yields `messages`, then (with `stall`) sets `stalled` and
    waits forever."""
    queue = list(messages)

    async def receive() -> Message:
        if not queue and stall:
            if stalled is not None:
                stalled.set()
            await asyncio.Event().wait()
        return queue.pop(0)

    limits = LimitsSettings(body_timeout_s=0.05)
    app = SimpleNamespace(
        state=SimpleNamespace(gateway=SimpleNamespace(settings=SimpleNamespace(limits=limits)))
    )
    scope = {"type": "http", "headers": list(headers), "app": app}
    return Request(scope, receive)


def _run(read: Callable[[], Awaitable[bytes]]) -> bytes:
    return asyncio.run(read())  # type: ignore[arg-type]


def _chunk(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def test_chunks_are_joined_in_order() -> None:
    request = _request([_chunk(b'{"a":', True), _chunk(b"", True), _chunk(b" 1}", False)])
    assert _run(lambda: read_body(request, 100)) == b'{"a": 1}'


def test_a_declared_length_past_the_limit_is_refused_before_reading() -> None:
    request = _request([], headers=((b"content-length", b"101"),))
    with pytest.raises(PayloadTooLarge, match="request body of 101 bytes exceeds the limit of 100"):
        _run(lambda: read_body(request, 100))


def test_chunks_past_the_limit_are_refused_while_they_arrive() -> None:
    request = _request([_chunk(b"x" * 60, True), _chunk(b"x" * 60, True)], stall=True)
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 100 bytes"):
        _run(lambda: read_body(request, 100))


def test_a_client_that_leaves_mid_body_is_a_408() -> None:
    request = _request([_chunk(b"[1, ", True), {"type": "http.disconnect"}])
    with pytest.raises(RequestTimeout, match="closed the connection"):
        _run(lambda: read_body(request, 100))


@pytest.mark.parametrize("first", [[], [_chunk(b"[1, ", True)]])
def test_a_body_that_stalls_is_a_408_naming_the_setting(first: list[Message]) -> None:
    request = _request(first, stall=True)
    with pytest.raises(RequestTimeout, match=r"within 0.05 s \(limits.body_timeout_s\)"):
        _run(lambda: read_body(request, 100))


def test_someone_elses_cancellation_is_not_a_timeout() -> None:
    async def cancelled_while_reading() -> bytes:
        stalled = asyncio.Event()
        task = asyncio.create_task(read_body(_request([], stall=True, stalled=stalled), 100))
        await stalled.wait()  # the read is waiting for its first message, its timer armed
        task.cancel()
        return await task

    with pytest.raises(asyncio.CancelledError):
        _run(cancelled_while_reading)


def test_the_timer_is_gone_after_a_read() -> None:
    async def read_then_wait() -> bytes:
        body = await read_body(_request([_chunk(b"{}", False)]), 100)
        await asyncio.sleep(0.1)  # not a synchronisation: a leftover timer would fire by now
        return body

    assert _run(read_then_wait) == b"{}"
