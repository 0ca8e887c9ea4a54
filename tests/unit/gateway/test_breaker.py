"""The circuit breaker settles every call it admits, cancellation included (issue 14).

An injectable clock drives open -> half-open; no test sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import build_context
from gateway.core.errors import (
    BreakerOpen,
    DeadlineExceeded,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.types import FRAMEWORKS, InferRequest
from gateway.routing.breaker import BreakerState, CircuitBreaker
from gateway.settings import BreakerSettings
from tests.unit.gateway.gateway_fakes import FEATURES, FakeUpstream, make_store, settings_for

RESET_S = 10.0


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, threshold: int = 2) -> CircuitBreaker:
    settings = BreakerSettings(failure_threshold=threshold, reset_after_s=RESET_S)
    return CircuitBreaker(settings, "pytorch", clock=clock)


async def _ok() -> str:
    return "answer"


def _raising(exc: BaseException) -> Callable[[], Awaitable[str]]:
    async def attempt() -> str:
        raise exc

    return attempt


async def _fail(breaker: CircuitBreaker, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        await breaker.call(_raising(exc))


async def _open_then_half_open(breaker: CircuitBreaker, clock: Clock) -> None:
    while breaker.state is BreakerState.CLOSED:
        await _fail(breaker, UpstreamTimeout("pytorch", "deadline"))
    assert breaker.state is BreakerState.OPEN and not breaker.accepting
    with pytest.raises(BreakerOpen, match="pytorch: circuit breaker is open"):
        await breaker.call(_ok)
    clock.now += RESET_S
    assert breaker.state is BreakerState.HALF_OPEN and breaker.accepting


@run
async def test_opens_after_threshold_probes_once_then_closes() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    await _fail(breaker, UpstreamTimeout("pytorch", "deadline"))
    assert breaker.state is BreakerState.CLOSED  # one failure is below the threshold
    await _open_then_half_open(breaker, clock)
    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        return "probe"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await asyncio.sleep(0)  # let the probe take the slot
    assert not breaker.accepting  # half-open with the probe out: refuses, so not ready
    with pytest.raises(BreakerOpen):
        await breaker.call(_ok)  # one probe at a time
    release.set()
    assert await probe == "probe"
    assert breaker.state is BreakerState.CLOSED and breaker.accepting


@run
async def test_cancelled_probe_releases_the_slot() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    await _open_then_half_open(breaker, clock)
    started = asyncio.Event()

    async def hung_probe() -> str:
        started.set()
        await asyncio.Event().wait()  # never answers: a client deadline will cancel it
        return "never"

    probe = asyncio.create_task(breaker.call(hung_probe))
    await started.wait()
    assert not breaker.accepting
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    # No verdict on the backend, but the slot is free: the next call is the new probe.
    assert breaker.state is BreakerState.HALF_OPEN and breaker.accepting
    assert await breaker.call(_ok) == "answer"
    assert breaker.state is BreakerState.CLOSED


@run
async def test_unexpected_exception_in_probe_releases_the_slot_and_reopens() -> None:
    clock = Clock()
    breaker = _breaker(clock)
    await _open_then_half_open(breaker, clock)
    await _fail(breaker, KeyError("a bug in a codec, not an UpstreamError"))
    assert breaker.state is BreakerState.OPEN  # counted as a failure of the probe
    clock.now += RESET_S
    assert breaker.accepting  # the slot was released: a later probe may go
    assert await breaker.call(_ok) == "answer"
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "exc", [UpstreamRejected("pytorch", "bad input"), NotFound("unknown model")]
)
@run
async def test_client_errors_prove_the_backend_healthy(exc: Exception) -> None:
    clock = Clock()
    breaker = _breaker(clock)
    await _open_then_half_open(breaker, clock)
    await _fail(breaker, exc)
    assert breaker.state is BreakerState.CLOSED


@run
async def test_failure_of_an_older_call_does_not_free_the_current_probe() -> None:
    clock = Clock()
    breaker = _breaker(clock, threshold=1)
    release_old, started_probe = asyncio.Event(), asyncio.Event()

    async def old_call() -> str:
        await release_old.wait()
        raise UpstreamTimeout("pytorch", "late failure")

    async def probe_call() -> str:
        started_probe.set()
        await asyncio.Event().wait()
        return "never"

    old = asyncio.create_task(breaker.call(old_call))  # admitted while closed
    await asyncio.sleep(0)
    await _fail(breaker, UpstreamTimeout("pytorch", "deadline"))  # opens it
    clock.now += RESET_S
    probe = asyncio.create_task(breaker.call(probe_call))
    await started_probe.wait()
    release_old.set()
    with pytest.raises(UpstreamTimeout):
        await old
    assert not breaker.accepting  # still exactly one probe out
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


def _to_pytorch() -> InferRequest:
    return InferRequest("toy", {"input": np.ones((1, FEATURES), np.float32)}, pinned="pytorch")


@run
async def test_router_serves_again_after_a_cancelled_probe(tmp_path: Path) -> None:
    """The issue's scenario through the router: an open arm is not ready; its probe is
    cancelled (a client deadline); the healthy backend then serves and is ready again."""
    upstreams = {fw: FakeUpstream(fw) for fw in FRAMEWORKS}
    settings = settings_for(make_store(tmp_path), breaker={"failure_threshold": 1})
    router = build_context(settings, upstreams).router
    clock = Clock()
    router.breakers["pytorch"] = CircuitBreaker(settings.breaker, "pytorch", clock=clock)
    upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "connection refused")
    with pytest.raises(UpstreamUnavailable):
        await router.infer(_to_pytorch())
    upstreams["pytorch"].fail_with, upstreams["pytorch"].delay = None, 3600.0
    assert (await router.ready("toy"))["pytorch"] is False  # open
    clock.now += settings.breaker.reset_after_s
    probe = asyncio.create_task(router.infer(_to_pytorch()))
    while len(upstreams["pytorch"].calls) < 2:
        await asyncio.sleep(0)
    assert (await router.ready("toy"))["pytorch"] is False  # half-open, probe out
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    upstreams["pytorch"].delay = 0.0
    assert (await router.ready("toy"))["pytorch"] is True
    answer = await router.infer(_to_pytorch())
    assert answer.backend == "pytorch"
    assert router.breakers["pytorch"].state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("tensorflow", "UNAVAILABLE at the deadline"),
        UpstreamTimeout("tensorflow", "no answer in time"),
    ],
)
@run
async def test_a_deadline_the_client_spent_opens_no_breaker(
    tmp_path: Path, error: UpstreamError
) -> None:
    """Issue 24: a 1 ms deadline is answered 504 (DeadlineExceeded), never 503, leaves
    the breaker closed with no failure counted, and the next normal call succeeds."""
    upstreams = {fw: FakeUpstream(fw) for fw in FRAMEWORKS}
    settings = settings_for(make_store(tmp_path), breaker={"failure_threshold": 1})
    router = build_context(settings, upstreams).router
    upstreams["tensorflow"].fail_with = error
    for _ in range(5):
        request = InferRequest(
            "toy", {"input": np.ones((1, FEATURES), np.float32)}, pinned="tensorflow"
        )
        request.deadline = time.monotonic() + 0.05  # under breaker.min_timeout_s (0.1)
        with pytest.raises(DeadlineExceeded) as raised:
            await router.infer(request)
        assert raised.value.status == 504
    assert len(upstreams["tensorflow"].calls) == 5  # each reached the backend and failed
    assert router.breakers["tensorflow"].state is BreakerState.CLOSED
    upstreams["tensorflow"].fail_with = None
    request = InferRequest(
        "toy", {"input": np.ones((1, FEATURES), np.float32)}, pinned="tensorflow"
    )
    assert (await router.infer(request)).backend == "tensorflow"
