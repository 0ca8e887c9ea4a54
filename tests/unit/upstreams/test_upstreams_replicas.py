"""Round robin over replicas: skip the ones that failed to connect, never re-send a timeout."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.errors import UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from gateway.upstreams.replicas import ReplicaPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def pool(replicas: list[str], clock: Clock | None = None) -> ReplicaPool[str]:
    return ReplicaPool("tensorflow", replicas, unhealthy_for_s=2.0, clock=clock or Clock())


async def answer(replica: str, left: float) -> str:
    return replica


def test_round_robin() -> None:
    replicas = pool(["a", "b", "c"])
    assert [run(replicas.call(answer, 1.0)) for _ in range(4)] == ["a", "b", "c", "a"]


def test_connection_failure_moves_on_and_marks_the_replica() -> None:
    clock, tried = Clock(), []
    replicas = pool(["a", "b"], clock)

    async def attempt(replica: str, left: float) -> str:
        tried.append(replica)
        if replica == "a":
            raise UpstreamUnavailable("tensorflow", "connection refused")
        return replica

    assert run(replicas.call(attempt, 1.0)) == "b"
    assert [run(replicas.call(attempt, 1.0)) for _ in range(3)] == ["b", "b", "b"]
    assert tried == ["a", "b", "b", "b", "b"]  # "a" skipped while unhealthy
    clock.now += 2.5
    assert sorted(replicas.healthy()) == ["a", "b"]  # "a" is back after unhealthy_for_s


def test_timeouts_and_rejections_are_never_resent() -> None:
    for error in (UpstreamTimeout("tensorflow", "slow"), UpstreamRejected("tensorflow", "bad")):
        tried: list[str] = []

        async def attempt(replica: str, left: float, error=error, tried=tried) -> str:
            tried.append(replica)
            raise error

        with pytest.raises(type(error)):
            run(pool(["a", "b"]).call(attempt, 1.0))
        assert tried == ["a"]


def test_no_healthy_replica_left() -> None:
    async def refuse(replica: str, left: float) -> str:
        raise UpstreamUnavailable("tensorflow", f"{replica} refused")

    replicas = pool(["a", "b"])
    with pytest.raises(UpstreamUnavailable, match=r"no healthy replica \(2 of 2 tried, last: b"):
        run(replicas.call(refuse, 1.0))
    with pytest.raises(UpstreamUnavailable, match="all 2 marked unhealthy"):
        run(replicas.call(answer, 1.0))


def test_each_attempt_gets_what_is_left_of_the_deadline() -> None:
    clock, budgets = Clock(), []
    replicas = pool(["a", "b"], clock)

    async def slow_refusal(replica: str, left: float) -> str:
        budgets.append(left)
        clock.now += 0.4
        if replica == "a":
            raise UpstreamUnavailable("tensorflow", "refused")
        return replica

    assert run(replicas.call(slow_refusal, 1.0)) == "b"
    assert budgets == pytest.approx([1.0, 0.6])


def test_deadline_spent_on_failed_replicas_is_a_timeout() -> None:
    clock = Clock()

    async def slow_refusal(replica: str, left: float) -> str:
        clock.now += 2.0
        raise UpstreamUnavailable("tensorflow", "refused")

    with pytest.raises(UpstreamTimeout):
        run(pool(["a", "b"], clock).call(slow_refusal, 1.0))


def test_needs_a_replica() -> None:
    with pytest.raises(ValueError, match="no replica"):
        ReplicaPool("pytorch", [], 2.0)


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("tensorflow", "UNAVAILABLE: the call was torn down"),
        UpstreamTimeout("tensorflow", "no answer in time"),
    ],
)
def test_an_attempt_cut_short_by_the_callers_deadline_judges_no_replica(
    error: Exception,
) -> None:
    """Issue 24: 1 ms client deadlines marked the only TF replica unhealthy for 2 s (and
    answered 503). An attempt given less than `min_verdict_s` is the caller's doing."""
    replicas = ReplicaPool("tensorflow", ["a"], 2.0, clock=Clock(), min_verdict_s=0.1)

    async def attempt(replica: str, left: float) -> str:
        raise error

    for _ in range(10):  # twice the outlier detector's run: nothing counted
        with pytest.raises(UpstreamTimeout) as raised:
            run(replicas.call(attempt, 0.001))
        assert raised.value.status == 504
    assert replicas.healthy() == ["a"] and not replicas.outliers.ejected(0)
    assert run(replicas.call(answer, 1.0)) == "a"  # the next normal call goes through


def test_the_same_failure_with_time_left_still_marks_the_replica() -> None:
    replicas = ReplicaPool("tensorflow", ["a"], 2.0, clock=Clock(), min_verdict_s=0.1)

    async def refused(replica: str, left: float) -> str:
        raise UpstreamUnavailable("tensorflow", "connection refused")

    with pytest.raises(UpstreamUnavailable):
        run(replicas.call(refused, 0.5))
    assert replicas.healthy() == []
