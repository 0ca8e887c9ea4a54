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

from gateway.processes.launcher import start_gateway, stop_gateway
from trainers.architecture import to_model_input
from trainers.data import load_dataset

MODEL, EXPERIMENT = "digits-mlp", "digits-mlp-ab"
POLICY, EXP = f"/admin/models/{MODEL}/policy", f"/admin/experiments/{EXPERIMENT}"
ALL_TF = {"weights": {"tensorflow": 100, "pytorch": 0}}
FOLLOW_WITHIN_S = 1.0
Gateway = tuple[
    str, dict[str, str]
]  # REST base URL, admin header  # the acceptance figure for every process following a change


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


def _admin(gateway: Gateway, method: str, path: str, **kw: Any) -> Any:
    rest, headers = gateway
    reply = httpx.request(method, f"{rest}{path}", headers=headers, timeout=30, **kw)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _act(gateway: Gateway, action: str) -> None:
    _admin(gateway, "POST", f"{EXP}/{action}", json={"reason": f"test {action}"})


def _restart(stack: dict[str, Any], directory: Path | None = None) -> Gateway:
    """(Re)start a gateway process in `directory` (the stack's own by default)."""
    directory = directory or stack["paths"].gateway_dir
    stop_gateway(directory)
    state = stack["state"]
    started = start_gateway(state.tensorflow, state.pytorch, stack["store"].resolve(), directory)
    token = Path(started.admin_token_file).read_text().strip()
    return started.rest, {"Authorization": f"Bearer {token}"}


def _gateway(stack: dict[str, Any]) -> Gateway:
    return stack["gateway"]["rest"], stack["admin"]


def test_override_and_experiment_state_survive_a_restart(
    stack: dict[str, Any], digits: np.ndarray
) -> None:
    gateway = _gateway(stack)
    body = {"policy": ALL_TF, "reason": "before restart", "set_by": "ops"}
    _admin(gateway, "PATCH", POLICY, json=body)
    _act(gateway, "pause")
    gateway = _restart(stack)
    stack["gateway"]["rest"] = gateway[0]
    policy = _admin(gateway, "GET", POLICY)
    assert policy["source"] == "override" and policy["layers"]["override"]["set_by"] == "ops"
    assert policy["layers"]["experiment"] is None  # paused: its layer is cleared
    assert _admin(gateway, "GET", EXP)["status"] == "paused"
    assert _arms(gateway[0], digits) == {"tensorflow"}
    _act(gateway, "start")
    _admin(gateway, "DELETE", POLICY)
    assert _arms(gateway[0], digits) == {"tensorflow", "pytorch"}


def test_experiment_transitions_leave_the_override_in_force(
    stack: dict[str, Any], digits: np.ndarray
) -> None:
    """The issue's scenario: PATCH 100/0, then pause, start and end keep 100/0."""
    gateway = _gateway(stack)
    rest = gateway[0]
    _admin(gateway, "PATCH", POLICY, json=ALL_TF)
    for action in ("pause", "start"):
        _act(gateway, action)
        effective = _admin(gateway, "GET", POLICY)["effective"]
        assert effective["weights"] == {"tensorflow": 100.0, "pytorch": 0.0}
        assert effective["shadow_sample_rate"] == 0.0  # no mirroring of every request
        assert _arms(rest, digits) == {"tensorflow"}
    assert _admin(gateway, "GET", EXP)["overridden_since"] is not None
    assert _admin(gateway, "DELETE", POLICY)["source"] == "experiment"
    assert _arms(rest, digits) == {"tensorflow", "pytorch"}  # the experiment's split is back
    _admin(gateway, "PATCH", POLICY, json=ALL_TF)
    _act(gateway, "end")
    assert _admin(gateway, "GET", POLICY)["source"] == "override"
    assert _arms(rest, digits) == {"tensorflow"}
    assert _admin(gateway, "DELETE", POLICY)["source"] == "configured"


def _within(check: Callable[[], bool]) -> bool:
    """Does `check` hold at some poll before `FOLLOW_WITHIN_S` has passed?"""
    deadline = time.monotonic() + FOLLOW_WITHIN_S
    while time.monotonic() < deadline:
        if check():
            return True
    return False


def _eventually(check: Callable[[], bool], deadline_s: float = 15.0) -> bool:
    """`check` polled until it holds or `deadline_s` passed (log writes are batched)."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # the poll's pace, not a synchronisation
    return True


def _served(gateway: Gateway) -> int:
    """Requests in the experiment's live per-arm figures, as `gateway` reports them."""
    listing = _admin(gateway, "GET", "/admin/experiments")["experiments"]
    arms = {e["id"]: e for e in listing}[EXPERIMENT]["arms"]
    return sum(int(arm["requests"]) for arm in arms.values())


def _source(gateway: Gateway) -> str:
    return str(_admin(gateway, "GET", POLICY)["source"])


def _status(gateway: Gateway) -> str:
    listing = _admin(gateway, "GET", "/admin/experiments")["experiments"]
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
        a, b = (_restart(stack, d) for d in dirs)
        _arms(a[0], digits, 20), _arms(b[0], digits, 20)  # in the experiment, both gateways
        assert _eventually(lambda: _served(a) == 40)  # live figures count every process's
        _admin(a, "PATCH", POLICY, json={"policy": ALL_TF, "reason": "through a"})
        assert _within(lambda: _source(b) == "override")
        assert _arms(b[0], digits) == {"tensorflow"}
        _act(b, "pause")
        assert _within(lambda: _status(a) == "paused")
        _admin(b, "DELETE", POLICY)
        assert _within(lambda: _source(a) == "configured")  # paused, no override
        events = _admin(a, "GET", EXP)["events"]
        assert [e["action"] for e in events] == ["start", "pause"]  # one auto-start of two
    finally:
        for directory in dirs:
            stop_gateway(directory)
