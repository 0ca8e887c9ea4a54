"""One control plane against the real stack: the admin override and the experiment's
layer, kept in the database across restarts, and followed by every gateway process.

The default config runs `digits-mlp-ab` (50/50 sticky) on `digits-mlp`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.launcher import GatewayEndpoints, start_gateway, stop_gateway
from trainers.architecture import to_model_input
from trainers.data import load_dataset

MODEL, EXPERIMENT = "digits-mlp", "digits-mlp-ab"
POLICY, EXP = f"/admin/models/{MODEL}/policy", f"/admin/experiments/{EXPERIMENT}"
ALL_TF = {"weights": {"tensorflow": 100, "pytorch": 0}}
FOLLOW_WITHIN_S = 1.0  # the acceptance figure for every process following a change


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:1], "mlp")


def _arms(rest: str, x: np.ndarray, n: int = 40) -> set[str]:
    """The arms that answered n requests, each with its own routing key and connection."""
    arms = set()
    for i in range(n):
        headers = {"X-Routing-Key": f"user-{i}"}
        reply = httpx.post(
            f"{rest}/v1/models/{MODEL}:predict", json={"instances": x.tolist()},
            headers=headers, timeout=30,
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        arms.add(reply.headers["X-Backend"])
    return arms


def _admin(stack: dict[str, Any], method: str, path: str, rest: str, **kw: Any) -> Any:
    reply = httpx.request(method, f"{rest}{path}", headers=stack["admin"], timeout=30, **kw)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _act(stack: dict[str, Any], rest: str, action: str) -> None:
    _admin(stack, "POST", f"{EXP}/{action}", rest, json={"reason": f"test {action}"})


def _restart(stack: dict[str, Any], directory: Path | None = None) -> GatewayEndpoints:
    directory = directory or stack["paths"].gateway_dir
    stop_gateway(directory)
    backends = {k: v for k, v in stack.items() if k in ("tensorflow", "pytorch")}
    return start_gateway(backends, stack["store"].resolve(), directory)


def test_override_and_experiment_state_survive_a_restart(
    stack: dict[str, Any], digits: np.ndarray
) -> None:
    rest = stack["gateway"]["rest"]
    body = {"policy": ALL_TF, "reason": "before restart", "set_by": "ops"}
    _admin(stack, "PATCH", POLICY, rest, json=body)
    _act(stack, rest, "pause")
    rest = stack["gateway"]["rest"] = _restart(stack).rest
    policy = _admin(stack, "GET", POLICY, rest)
    assert policy["source"] == "override" and policy["layers"]["override"]["set_by"] == "ops"
    assert policy["layers"]["experiment"] is None  # paused: its layer is cleared
    assert _admin(stack, "GET", EXP, rest)["status"] == "paused"
    assert _arms(rest, digits) == {"tensorflow"}
    _act(stack, rest, "start")
    _admin(stack, "DELETE", POLICY, rest)
    assert _arms(rest, digits) == {"tensorflow", "pytorch"}


def test_experiment_transitions_leave_the_override_in_force(
    stack: dict[str, Any], digits: np.ndarray
) -> None:
    """The issue's scenario: PATCH 100/0, then pause, start and end keep 100/0."""
    rest = stack["gateway"]["rest"]
    _admin(stack, "PATCH", POLICY, rest, json=ALL_TF)
    for action in ("pause", "start"):
        _act(stack, rest, action)
        effective = _admin(stack, "GET", POLICY, rest)["effective"]
        assert effective["weights"] == {"tensorflow": 100.0, "pytorch": 0.0}
        assert effective["shadow_sample_rate"] == 0.0  # no mirroring of every request
        assert _arms(rest, digits) == {"tensorflow"}
    assert _admin(stack, "GET", EXP, rest)["overridden_since"] is not None
    assert _admin(stack, "DELETE", POLICY, rest)["source"] == "experiment"
    assert _arms(rest, digits) == {"tensorflow", "pytorch"}  # the experiment's split is back
    _admin(stack, "PATCH", POLICY, rest, json=ALL_TF)
    _act(stack, rest, "end")
    assert _admin(stack, "GET", POLICY, rest)["source"] == "override"
    assert _arms(rest, digits) == {"tensorflow"}
    assert _admin(stack, "DELETE", POLICY, rest)["source"] == "configured"


def _within(check: Callable[[], bool]) -> bool:
    """Does `check` hold at some poll before `FOLLOW_WITHIN_S` has passed?"""
    deadline = time.monotonic() + FOLLOW_WITHIN_S
    while time.monotonic() < deadline:
        if check():
            return True
    return False


def _source(stack: dict[str, Any], rest: str) -> str:
    return str(_admin(stack, "GET", POLICY, rest)["source"])


def _status(stack: dict[str, Any], rest: str) -> str:
    listing = _admin(stack, "GET", "/admin/experiments", rest)["experiments"]
    return str({e["id"]: e for e in listing}[EXPERIMENT]["status"])


def test_two_gateways_on_one_postgres_follow_each_other(
    stack: dict[str, Any],
    postgres_url: str,
    tmp_path: Path,
    digits: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUALSERVE_EXPERIMENTS__DATABASE_URL", postgres_url)
    dirs = [tmp_path / "a", tmp_path / "b"]
    try:
        a, b = (_restart(stack, d).rest for d in dirs)
        _admin(stack, "PATCH", POLICY, a, json={"policy": ALL_TF, "reason": "through a"})
        assert _within(lambda: _source(stack, b) == "override")
        assert _arms(b, digits) == {"tensorflow"}
        _act(stack, b, "pause")
        assert _within(lambda: _status(stack, a) == "paused")
        _admin(stack, "DELETE", POLICY, b)
        assert _within(lambda: _source(stack, a) == "configured")  # paused, no override
        events = _admin(stack, "GET", EXP, a)["events"]
        assert [e["action"] for e in events] == ["start", "pause"]  # one auto-start of two
    finally:
        for directory in dirs:
            stop_gateway(directory)
