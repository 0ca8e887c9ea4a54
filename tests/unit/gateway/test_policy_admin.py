"""The admin override through the app (fake upstreams): layers, experiments, two gateways."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}
POLICY = "/admin/models/toy/policy"
EXPERIMENT = "/admin/experiments/toy-ab"
ALL_TF = {"weights": {"tensorflow": 100, "pytorch": 0}}


def _client(store: Path, data: Path) -> TestClient:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(store, experiments={"flush_interval_s": 0.01, "data_dir": str(data)})
    return TestClient(create_app(settings, upstreams))  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(make_store(tmp_path / "store"), tmp_path / "data") as c:
        yield c


def _arms(client: TestClient, n: int = 20) -> set[str]:
    """The arms that answered n requests, each with its own routing key."""
    arms = set()
    for i in range(n):
        headers = {"X-Routing-Key": f"user-{i}"}
        body = {"instances": [[1.0, 0.0, 0.0, 0.0]]}
        reply = client.post("/v1/models/toy:predict", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        arms.add(reply.headers["X-Backend"])
    return arms


def _act(client: TestClient, action: str) -> None:
    reply = client.post(f"{EXPERIMENT}/{action}", json={"reason": "test"}, headers=ADMIN)
    assert reply.status_code == 200, reply.text


def test_an_override_outlives_experiment_transitions(client: TestClient) -> None:
    """The issue's scenario: pause, start and end leave the admin's 100/0 in force."""
    assert _arms(client) == {"tensorflow", "pytorch"}  # the experiment's 50/50
    set_at = time.time()
    reply = client.patch(POLICY, json={"policy": ALL_TF, "reason": "incident"}, headers=ADMIN)
    assert reply.status_code == 200 and reply.json()["source"] == "override"
    for action in ("pause", "start"):
        _act(client, action)
        policy = client.get(POLICY, headers=ADMIN).json()
        assert policy["effective"]["weights"] == {"tensorflow": 100.0, "pytorch": 0.0}
        # merged into the experiment's policy: no mirroring of every request
        assert policy["effective"]["shadow_sample_rate"] == 0.0
        assert _arms(client) == {"tensorflow"}
    since = client.get(EXPERIMENT, headers=ADMIN).json()["overridden_since"]
    assert since is not None and since >= set_at
    cleared = client.delete(POLICY, headers=ADMIN).json()
    assert cleared["source"] == "experiment" and cleared["layers"]["override"] is None
    assert client.get(EXPERIMENT, headers=ADMIN).json()["overridden_since"] is None
    assert _arms(client) == {"tensorflow", "pytorch"}  # the experiment's split is back
    client.patch(POLICY, json=ALL_TF, headers=ADMIN)
    _act(client, "end")
    assert client.get(POLICY, headers=ADMIN).json()["source"] == "override"
    assert _arms(client) == {"tensorflow"}
    assert client.delete(POLICY, headers=ADMIN).json()["source"] == "configured"


def test_overridden_requests_are_logged_outside_the_experiment(client: TestClient) -> None:
    _arms(client, 6)
    client.patch(POLICY, json=ALL_TF, headers=ADMIN)
    _arms(client, 5)
    analysis = client.get(EXPERIMENT, headers=ADMIN).json()
    assert analysis["status"] == "running"
    assert sum(arm["requests"] for arm in analysis["arms"].values()) == 6


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"policy": {"weights": {"tensorflow": -1}}}, "weights"),
        ({"mode": "weighted", "colour": "red"}, "colour"),
        ({"policy": ALL_TF, "weights": {}}, "weights"),
        ({"policy": [1]}, "policy"),
        ({**ALL_TF, "reason": 3}, "reason"),
    ],
)
def test_bad_overrides_name_the_field(client: TestClient, body: Any, field: str) -> None:
    reply = client.patch(POLICY, json=body, headers=ADMIN)
    assert reply.status_code == 400 and field in reply.json()["error"]
    assert client.get(POLICY, headers=ADMIN).json()["layers"]["override"] is None


def test_the_override_records_who_and_why(client: TestClient) -> None:
    body = {"policy": {"mode": "pinned"}, "reason": "rollout", "set_by": "bob"}
    layer = client.put(POLICY, json=body, headers=ADMIN).json()["layers"]["override"]
    assert (layer["set_by"], layer["reason"]) == ("bob", "rollout")
    assert layer["policy"]["mode"] == "pinned"
    assert client.delete("/admin/models/nope/policy", headers=ADMIN).status_code == 404
    assert client.delete(POLICY).status_code == 401


def _until(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.02)  # polling interval of a bounded wait, not a synchronisation


def test_two_gateways_on_one_database_share_state(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "store"), tmp_path / "data"
    with _client(store, data) as a, _client(store, data) as b:
        a.patch(POLICY, json=ALL_TF, headers=ADMIN)
        _until(lambda: b.get(POLICY, headers=ADMIN).json()["source"] == "override")
        assert _arms(b) == {"tensorflow"}
        _act(b, "pause")
        _until(lambda: a.get(EXPERIMENT, headers=ADMIN).json()["status"] == "paused")
        events = a.get(EXPERIMENT, headers=ADMIN).json()["events"]
    # both started at once: the experiment was defined and auto-started exactly once
    assert [e["action"] for e in events] == ["start", "pause"]
