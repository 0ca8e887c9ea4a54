"""Retry budget and outlier ejection (Envoy `retry_budget` / `outlier_detection`,
Finagle `RetryBudget`), with a hand-driven clock."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core.errors import UpstreamError, UpstreamUnavailable
from gateway.upstreams.replicas import ReplicaPool
from gateway.upstreams.resilience import OutlierDetector, RetryBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retries_stay_within_the_budget_ratio() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_s=0.0, clock=clock)
    granted = 0
    for _ in range(1000):  # 1,000 calls in the same instant, each wanting a retry
        budget.deposit()
        granted += budget.try_withdraw()
    assert granted == 200  # 20% of the calls, not one retry per call
    assert budget.refused == 800


def test_deposits_and_the_reserve_fill_up_to_the_cap_only() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_s=0.5, clock=clock)  # cap: max(10, 5) = 10
    for _ in range(40):  # 0.5 at start + 40 x 0.2 = 8.5 tokens
        budget.deposit()
    clock.now += 1.0  # + 0.5: 9 tokens
    assert sum(budget.try_withdraw() for _ in range(12)) == 9
    for _ in range(100):  # 20 tokens' worth, capped at 10
        budget.deposit()
    clock.now += 100.0  # 50 more, still 10
    assert sum(budget.try_withdraw() for _ in range(12)) == 10
    assert budget.refused == 3 + 2


def test_the_reserve_refills_with_time() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_s=3.0, clock=clock)
    assert [budget.try_withdraw() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0
    assert [budget.try_withdraw() for _ in range(4)] == [True, True, True, False]


def test_a_replica_failing_in_a_row_is_ejected_longer_each_time() -> None:
    clock = Clock()
    outliers = OutlierDetector(2, consecutive=3, base_ejection_s=5, max_ejection_s=12, clock=clock)
    assert [outliers.record_failure(0) for _ in range(3)] == [False, False, True]
    assert outliers.ejected(0)
    clock.now += 5.0
    assert not outliers.ejected(0)  # back on probation after the first 5 s
    assert [outliers.record_failure(0) for _ in range(3)][-1]
    clock.now += 9.9
    assert outliers.ejected(0)  # the second ejection lasts 2 x 5 s
    clock.now += 0.2
    assert not outliers.ejected(0)
    outliers.record_failure(0)
    outliers.record_success(0)  # a success resets the count
    assert [outliers.record_failure(0) for _ in range(2)] == [False, False]


def test_the_last_replica_standing_is_never_ejected() -> None:
    outliers = OutlierDetector(2, consecutive=1, clock=Clock())
    assert outliers.record_failure(0) is True
    assert outliers.record_failure(1) is False
    assert not outliers.ejected(1)


def test_pool_refuses_a_retry_without_budget_and_ejects_a_failing_replica() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_s=0.0, clock=clock)
    outliers = OutlierDetector(2, consecutive=2, clock=clock)
    pool = ReplicaPool("tensorflow", ["a", "b"], 0.0, clock, budget, outliers)
    tried: list[str] = []

    async def attempt(replica: str, left: float) -> str:
        tried.append(replica)
        if replica == "a":
            raise UpstreamUnavailable("tensorflow", "connection refused")
        raise UpstreamError("tensorflow", "500 from the backend")

    with pytest.raises(UpstreamUnavailable) as spent:
        asyncio.run(pool.call(attempt, 1.0))
    assert tried == ["a"] and "retry budget spent" in spent.value.message
    with pytest.raises(UpstreamError):
        asyncio.run(pool.call(attempt, 1.0))  # "b" first this time: a backend error
    with pytest.raises(UpstreamError):
        asyncio.run(pool.call(attempt, 1.0))  # "a" refuses, no budget
    assert outliers.ejected(0)  # "a": two connection failures in a row
    assert pool.healthy() == ["b"]
