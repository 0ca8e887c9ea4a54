"""`POST /admin/experiments`: an experiment defined at run time is stored (it survives a
restart), starts when its model is free, its rollout begins through the experiment
layer; duplicates answer 409 and bad specs 400 naming the field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}
SPEC: dict[str, Any] = {
    "id": "toy-rollout",
    "model": "toy",
    "control": {"framework": "tensorflow"},
    "candidate": {"framework": "pytorch"},
    "decision_metrics": ["error_rate", "latency_p99_ms"],
    "margins": {"p99_ms": 50},
    "rollout": {"steps": [1, 50, 100], "min_units_per_step": 10},
}


def _client(store: Path, data: Path) -> TestClient:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    experiments = {"flush_interval_s": 0.01, "data_dir": str(data), "rollout_tick_s": 0.05}
    settings = settings_for(store, experiments=experiments)
    return TestClient(create_app(settings, upstreams))  # type: ignore[arg-type]


def _first_step(client: TestClient, deadline_s: float = 10.0) -> dict[str, Any]:
    """The rollout's first `rollout` event, once the controller wrote it."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        analysis = client.get("/admin/experiments/toy-rollout", headers=ADMIN).json()
        if analysis["rollout"]:
            return dict(analysis["rollout"][0])
    raise AssertionError(f"the rollout did not begin within {deadline_s} s")


def test_created_experiment_is_stored_started_and_rolled_out(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "store"), tmp_path / "data"
    with _client(store, data) as client:
        busy = client.post("/admin/experiments", json=SPEC, headers=ADMIN)
        assert busy.status_code == 201, busy.text
        assert busy.json()["experiment"]["status"] == "scheduled"  # toy-ab runs on toy
        # no split given: the rollout's first step, so it never starts at 50/50
        assert busy.json()["experiment"]["split"] == {"tensorflow": 99, "pytorch": 1}
        assert busy.json()["event"]["action"] == "define"
        again = client.post("/admin/experiments", json=SPEC, headers=ADMIN)
        assert again.status_code == 409 and "toy-rollout" in again.json()["error"]
        client.post("/admin/experiments/toy-ab/end", json={"reason": "make room"}, headers=ADMIN)
        first = _first_step(client)["details"]
        assert first["kind"] == "advance" and first["step"] == 0 and first["share"] == 1
        layers = client.get("/admin/models/toy/policy", headers=ADMIN).json()["layers"]
        assert layers["experiment"]["set_by"] == "experiment toy-rollout"
        assert layers["experiment"]["policy"]["weights"] == {"tensorflow": 99, "pytorch": 1}
    with _client(store, data) as restarted:
        listed = restarted.get("/admin/experiments", headers=ADMIN).json()["experiments"]
        stored = {e["id"]: e for e in listed}["toy-rollout"]
        assert stored["status"] == "running" and stored["rollout"]["min_units_per_step"] == 10
        assert stored["split"] == {"tensorflow": 99, "pytorch": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"alpha": 0.9}, "alpha"),
        ({"model": "nope"}, "model"),
        ({"rollout": {"steps": [1, 50]}}, "rollout"),
        ({"margins": {"p99_ms": -1}}, "margins.p99_ms"),
        ({"id": "has space"}, "id"),
    ],
)
def test_bad_specs_answer_400_naming_the_field(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    with _client(make_store(tmp_path / "store"), tmp_path / "data") as client:
        reply = client.post("/admin/experiments", json={**SPEC, **change}, headers=ADMIN)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"].startswith(f"{field}"), reply.json()
        assert client.post("/admin/experiments", json=[SPEC], headers=ADMIN).status_code == 400
        assert client.post("/admin/experiments", json=SPEC).status_code == 401
