"""A metric-gated rollout on the real stack with two gateway workers (issue 16).

An experiment created through `POST /admin/experiments` rolls `digits-mlp` out from 1% to
100% PyTorch while both backends are healthy, then rolls back to 0% once TorchServe is
stopped: its users fail over to TensorFlow, the step's sample-ratio check sees units on
the control that the 100% step gave it none of, and the guardrail acts within that step.
After each change, requests over fresh connections (both workers answer them) are routed
by the new split. Conditions are polled with deadlines while traffic flows.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.torchserve.launcher import stop_torchserve
from tests.integration.conftest import running_stack
from tests.integration.stack.test_workers import _per_worker
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL, DEFAULT_EXPERIMENT, EXPERIMENT = "digits-mlp", "digits-mlp-ab", "digits-mlp-rollout"
SPEC = {
    "id": EXPERIMENT,
    "model": MODEL,
    "control": {"framework": "tensorflow"},
    "candidate": {"framework": "pytorch"},
    # No labels here: decide on errors and latency, with margins loose enough that a
    # handful of candidate units at 1% can show non-inferiority.
    "decision_metrics": ["error_rate", "latency_p99_ms"],
    "margins": {"error_rate_points": 100, "p99_ms": 1000},
    "rollout": {"steps": [1, 50, 100], "min_units_per_step": 30},
}
DEADLINE_S = 150.0
_keys = itertools.count()


@pytest.fixture(scope="module")
def stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    with running_stack(trained_store, tmp_path_factory.mktemp("rollout"), gateway_workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def x() -> list[list[float]]:
    return to_model_input(load_dataset("digits").test.x[:1], "mlp").tolist()  # type: ignore[no-any-return]


def _admin(stack: dict[str, Any], method: str, path: str, **kw: Any) -> httpx.Response:
    url = f"{stack['gateway']['rest']}{path}"
    return httpx.request(method, url, headers=stack["admin"], timeout=30, **kw)


def _weights(stack: dict[str, Any]) -> dict[str, float]:
    layers = _admin(stack, "GET", f"/admin/models/{MODEL}/policy").json()["layers"]
    return dict(layers["experiment"]["policy"]["weights"]) if layers["experiment"] else {}


def _traffic(client: httpx.Client, rest: str, x: Any, n: int) -> list[httpx.Response]:
    """n predictions, each with a routing key never used before (a new unit)."""

    def one(_: int) -> httpx.Response:
        headers = {"X-Routing-Key": f"user-{next(_keys)}"}
        return client.post(
            f"{rest}/v1/models/{MODEL}:predict", json={"instances": x}, headers=headers
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _drive_until(stack: dict[str, Any], x: Any, done: Callable[[], bool], what: str) -> None:
    """Send traffic in batches until `done()` holds; fail after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(timeout=30) as client:
        while not done():
            assert time.monotonic() < deadline, f"{what} within {DEADLINE_S} s: {_rollout(stack)}"
            replies = _traffic(client, stack["gateway"]["rest"], x, 100)
            assert all(r.status_code == 200 for r in replies), replies[0].text


def _rollout(stack: dict[str, Any]) -> list[dict[str, Any]]:
    analysis = _admin(stack, "GET", f"/admin/experiments/{EXPERIMENT}").json()
    return [event["details"] for event in analysis["rollout"]]


def _fresh(stack: dict[str, Any], x: Any, n: int = 40) -> tuple[set[str], set[str]]:
    """Backends and X-Failover values of n requests over fresh connections (both workers
    take some); checks that every worker answered some of them."""
    before = _per_worker(stack, "tfserving-rest")
    backends, failovers = set(), set()
    for _ in range(n):
        headers = {"X-Routing-Key": f"user-{next(_keys)}"}
        reply = httpx.post(
            f"{stack['gateway']['rest']}/v1/models/{MODEL}:predict",
            json={"instances": x}, headers=headers, timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        backends.add(reply.headers["X-Backend"])
        failovers.add(reply.headers.get("X-Failover", "false"))
    after = _per_worker(stack, "tfserving-rest")
    assert len(after) == 2 and all(after[p] > before.get(p, 0.0) for p in after), (before, after)
    return backends, failovers


def test_rollout_advances_to_100_then_rolls_back_when_the_candidate_stops(
    stack: dict[str, Any], x: Any
) -> None:
    ended = _admin(
        stack, "POST", f"/admin/experiments/{DEFAULT_EXPERIMENT}/end", json={"reason": "t"}
    )
    assert ended.status_code == 200, ended.text
    created = _admin(stack, "POST", "/admin/experiments", json=SPEC)
    assert created.status_code == 201, created.text
    assert created.json()["experiment"]["status"] == "running"

    _drive_until(stack, x, lambda: _weights(stack).get("pytorch") == 100, "no rollout to 100%")
    steps = [(d["kind"], d["step"], d["share"]) for d in _rollout(stack)]
    assert steps == [("advance", 0, 1), ("advance", 1, 50), ("advance", 2, 100)]
    for advance in _rollout(stack)[1:]:  # each advance was justified by its step's figures
        evidence = advance["evidence"]
        assert evidence["decision"]["outcome"] in ("candidate_non_inferior", "candidate_superior")
        assert sum(evidence["units"].values()) >= 30 and evidence["units"]["pytorch"] > 0
    assert _fresh(stack, x) == ({"pytorch"}, {"false"})  # every worker follows the 100% step

    assert stop_torchserve(stack["paths"].torchserve_dir)
    _drive_until(stack, x, lambda: _weights(stack).get("pytorch") == 0, "no rollback")
    *_, rollback = _rollout(stack)
    assert (rollback["kind"], rollback["step"], rollback["share"]) == ("rollback", -1, 0)
    assert rollback["metric"] == "srm" and rollback["evidence"]["srm"]["flagged"]
    assert rollback["evidence"]["units"]["tensorflow"] > 0  # the failed-over users
    assert len(_rollout(stack)) == 4  # straight from the 100% step: no step in between
    assert _fresh(stack, x) == ({"tensorflow"}, {"false"})  # routed there, not failed over
