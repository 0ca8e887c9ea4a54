"""The router emits one outcome per upstream call: primary, failover, shadow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.catalog import Catalog
from gateway.core.errors import UpstreamRejected, UpstreamUnavailable
from gateway.core.outcome import CallOutcome
from gateway.core.types import InferRequest
from gateway.routing.policy_store import Route
from gateway.routing.router import Router
from gateway.settings import ModelPolicy
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

X = np.array([[0.0, 5.0, 1.0, 2.0]], dtype=np.float32)


class Fixed:
    """A policy store stand-in: one route for every model."""

    def __init__(self, route: Route) -> None:
        self.fixed = route

    def route(self, model: str) -> Route:
        return self.fixed


def _router(
    tmp_path: Path, policy: ModelPolicy, layer: str = "configured"
) -> tuple[Router, dict[str, FakeUpstream], list[CallOutcome], list[Callable[[], Awaitable[None]]]]:
    store = make_store(tmp_path)
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    outcomes: list[CallOutcome] = []
    jobs: list[Callable[[], Awaitable[None]]] = []

    def mirror(model: str, job: Callable[[], Awaitable[None]]) -> bool:
        jobs.append(job)
        return True

    router = Router(
        Catalog.from_store(store), upstreams, settings_for(store),  # type: ignore[arg-type]
        Fixed(Route(layer, policy)), outcomes.append, mirror,  # type: ignore[arg-type]
    )  # fmt: skip
    return router, upstreams, outcomes, jobs


def test_a_failover_is_two_outcomes_and_only_the_second_is_final(tmp_path: Path) -> None:
    router, upstreams, outcomes, _ = _router(tmp_path, ModelPolicy(mode="pinned"), "override")
    upstreams["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
    response = asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert response.backend == "pytorch" and response.failover
    first, second = outcomes
    assert (first.kind, first.arm, first.final, first.status) == (
        "primary",
        "tensorflow",
        False,
        503,
    )
    assert first.error == "UpstreamUnavailable" and first.response is None
    assert (second.kind, second.arm, second.final, second.status) == (
        "failover",
        "pytorch",
        True,
        200,
    )
    assert second.response is response and second.layer == "override"
    assert second.elapsed_s >= second.latency_s + first.latency_s * 0.999


def test_a_rejected_request_is_final_without_failover(tmp_path: Path) -> None:
    router, upstreams, outcomes, _ = _router(tmp_path, ModelPolicy(mode="pinned"))
    upstreams["tensorflow"].fail_with = UpstreamRejected("tensorflow", "bad input")
    with pytest.raises(UpstreamRejected):
        asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    (only,) = outcomes
    assert (only.kind, only.final, only.status, only.error) == (
        "primary",
        True,
        400,
        "UpstreamRejected",
    )
    assert upstreams["pytorch"].calls == []


def test_a_shadow_call_carries_its_comparison(tmp_path: Path) -> None:
    policy = ModelPolicy(mode="shadow", primary="tensorflow", shadow_sample_rate=1.0)
    router, _, outcomes, jobs = _router(tmp_path, policy)

    async def scenario() -> None:
        await router.infer(InferRequest(model="toy", inputs={"input": X}, outputs=["class"]))
        (job,) = jobs
        await job()

    asyncio.run(scenario())
    primary, shadow = outcomes
    assert (primary.kind, primary.arm, shadow.kind, shadow.arm) == (
        "primary", "tensorflow", "shadow", "pytorch",
    )  # fmt: skip
    assert shadow.final is False and shadow.comparison is not None
    assert shadow.comparison.agreed and shadow.comparison.max_abs_diff == 0.0  # same fake model


def test_outcomes_name_the_arm_a_failover_and_a_shadow_count_for(tmp_path: Path) -> None:
    arms = {"tf-v1": {"framework": "tensorflow", "version": 1},
            "tf-v2": {"framework": "tensorflow", "version": 2},
            "pt-v2": {"framework": "pytorch", "version": 2}}  # fmt: skip
    weights = {"tf-v1": 0, "tf-v2": 0, "pt-v2": 1}
    policy = ModelPolicy(arms=arms, weights=weights, mirror=True, shadow_sample_rate=1.0)
    router, upstreams, outcomes, jobs = _router(tmp_path, policy)
    request = InferRequest(model="toy", inputs={"input": X}, routing_key="u")
    response = asyncio.run(router.infer(request))
    assert (response.backend, response.version) == ("pytorch", 2)
    for job in jobs:
        asyncio.run(job())
    assert [(o.kind, o.arm, o.arm_name) for o in outcomes] == [
        ("primary", "pytorch", "pt-v2"),
        ("shadow", "tensorflow", "tf-v2"),  # the other framework at the arm's version
    ]
    outcomes.clear()
    upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "down")
    failed_over = asyncio.run(router.infer(InferRequest(model="toy", inputs={"input": X})))
    assert (failed_over.backend, failed_over.version) == ("tensorflow", 2)
    assert [(o.kind, o.arm_name) for o in outcomes] == [("primary", "pt-v2"), ("failover", "tf-v2")]
