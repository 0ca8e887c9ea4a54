"""Experiments through the app with fake upstreams: log, feedback, admin, restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}
ROWS = [[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]]  # classes 0, 1, 2


def _client(store: Path, **experiments: Any) -> TestClient:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(store, experiments={"flush_interval_s": 0.01, **experiments})
    return TestClient(create_app(settings, upstreams))  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(make_store(tmp_path)) as c:
        yield c


def _predict(client: TestClient, n: int, prefix: str = "r") -> list[tuple[str, str, int]]:
    """n requests (id, arm, predicted class), each with its own routing key."""
    out = []
    for i in range(n):
        rid, row = f"{prefix}{i}", ROWS[i % 3]
        headers = {"X-Request-Id": rid, "X-Routing-Key": f"user-{i}"}
        reply = client.post("/v1/models/toy:predict", json={"instances": [row]}, headers=headers)
        assert reply.status_code == 200, reply.text
        out.append((rid, reply.headers["X-Backend"], i % 3))
    return out


def test_default_experiment_runs_and_feedback_drives_accuracy(client: TestClient) -> None:
    served = _predict(client, 30)
    # Label every tensorflow answer correctly and every pytorch answer wrongly.
    items = [
        {"request_id": r, "label": c if arm == "tensorflow" else (c + 1) % 3}
        for r, arm, c in served
    ]
    reply = client.post("/v1/feedback", json={"feedback": items})
    assert reply.status_code == 201 and reply.json()["recorded"] == 30
    listing = client.get("/admin/experiments", headers=ADMIN).json()
    (experiment,) = listing["experiments"]
    assert experiment["id"] == "toy-ab" and experiment["status"] == "running"
    assert experiment["arms"]["tensorflow"]["accuracy"] == 1.0
    assert experiment["arms"]["pytorch"]["accuracy"] == 0.0
    assert listing["prediction_log"]["dropped"] == 0
    analysis = client.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    counts = {arm: sum(a == arm for _, a, _ in served) for arm in ("tensorflow", "pytorch")}
    for arm, n in counts.items():
        assert (
            analysis["arms"][arm]["requests"] == n
            and analysis["arms"][arm]["accuracy"]["labelled"] == n
        )
    # candidate (pytorch) - control (tensorflow): all wrong minus all right
    assert analysis["differences"]["accuracy"]["estimate"] == -1.0
    assert analysis["decision"]["metrics"]["accuracy"] in ("inferior", "inconclusive")


@pytest.mark.parametrize(
    ("wrong", "accuracy", "outcomes"),
    [
        ({"tensorflow": 0, "pytorch": 3}, "inferior", {"candidate_inferior"}),
        # superiority also needs p99 within 1 ms: this machine's timing may keep it open
        ({"tensorflow": 3, "pytorch": 0}, "superior", {"candidate_superior", "inconclusive"}),
        (
            {"tensorflow": 1, "pytorch": 1},
            "inconclusive",
            {"candidate_non_inferior", "inconclusive"},
        ),
    ],
)
def test_feedback_that_marks_answers_wrong_decides_by_direction(
    client: TestClient, wrong: dict[str, int], accuracy: str, outcomes: set[str]
) -> None:
    """`wrong[arm]` in 10 of an arm's answers get a different label (30% or 10%)."""
    served = _predict(client, 200)
    seen = {"tensorflow": 0, "pytorch": 0}
    items = []
    for rid, arm, cls in served:
        bad = seen[arm] % 10 < wrong[arm]
        seen[arm] += 1
        items.append({"request_id": rid, "label": (cls + 1) % 3 if bad else cls})
    assert client.post("/v1/feedback", json={"feedback": items}).status_code == 201
    analysis = client.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    decision = analysis["decision"]
    assert (analysis["control"], analysis["candidate"]) == ("tensorflow", "pytorch")
    assert decision["metrics"]["accuracy"] == accuracy, decision["sentence"]
    assert decision["outcome"] in outcomes, decision["sentence"]
    diff = analysis["differences"]["accuracy"]["estimate"]
    expected = (wrong["tensorflow"] - wrong["pytorch"]) / 10
    assert diff == pytest.approx(expected, abs=0.02)  # candidate - control, signed
    assert not analysis["srm"]["flagged"]


def test_pinned_or_unsplit_requests_are_logged_outside_the_experiment(client: TestClient) -> None:
    served = _predict(client, 6)
    for i in range(4):
        headers = {"X-Request-Id": f"pin{i}", "X-Backend": "pytorch"}
        reply = client.post(
            "/v1/models/toy:predict", json={"instances": [ROWS[0]]}, headers=headers
        )
        assert reply.status_code == 200 and reply.headers["X-Backend"] == "pytorch"
    shadow = {"mode": "shadow", "primary": "tensorflow", "shadow_sample_rate": 1.0}
    assert client.patch("/admin/models/toy/policy", json=shadow, headers=ADMIN).status_code == 200
    _predict(client, 3, prefix="shadowed")  # all answered by tensorflow: not randomised
    analysis = client.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    assert sum(arm["requests"] for arm in analysis["arms"].values()) == len(served)
    # still in the log: feedback on a pinned request is accepted, just not counted
    assert client.post("/v1/feedback", json={"request_id": "pin0", "label": 0}).status_code == 201


def test_feedback_outcomes_per_id(client: TestClient) -> None:
    (rid, _, cls), *_ = _predict(client, 1)
    assert client.post("/v1/feedback", json={"request_id": rid, "label": cls}).status_code == 201
    again = client.post("/v1/feedback", json={"request_id": rid, "label": cls})
    assert again.status_code == 200 and again.json()["results"][0]["outcome"] == "duplicate"
    mixed = client.post(
        "/v1/feedback",
        json={
            "feedback": [{"request_id": rid, "label": cls + 1}, {"request_id": "nope", "label": 1}]
        },
    )
    assert mixed.status_code == 207
    assert [r["status"] for r in mixed.json()["results"]] == [409, 202]  # pending: not logged yet
    assert client.post("/v1/feedback", json={"request_id": "nope", "label": 1}).status_code == 200
    bad = client.post("/v1/feedback", json={"request_id": rid, "label": "three"})
    assert bad.status_code == 400 and "label" in bad.json()["error"]


def test_admin_transitions_need_reasons_and_are_recorded(client: TestClient) -> None:
    base = "/admin/experiments/toy-ab"
    assert client.post(f"{base}/pause", json={}, headers=ADMIN).status_code == 400
    assert client.post(f"{base}/pause", json={"reason": "look"}, headers=ADMIN).status_code == 200
    assert client.post(f"{base}/pause", json={"reason": "again"}, headers=ADMIN).status_code == 409
    assert client.post(f"{base}/start", json={"reason": "go"}, headers=ADMIN).status_code == 200
    split = {"split": {"tensorflow": 100, "pytorch": 0}, "reason": "all tf"}
    assert client.patch(base, json=split, headers=ADMIN).status_code == 200
    assert {arm for _, arm, _ in _predict(client, 10)} == {"tensorflow"}
    assert client.post(f"{base}/end", json={"reason": "done"}, headers=ADMIN).status_code == 200
    policy = client.get("/admin/models/toy/policy", headers=ADMIN).json()
    assert policy["effective"]["weights"] == {"tensorflow": 50.0, "pytorch": 50.0}  # given back
    assert policy["source"] == "configured" and policy["layers"]["experiment"] is None
    events = client.get(base, headers=ADMIN).json()["events"]
    assert [(e["action"], e["reason"]) for e in events] == [
        ("start", "start time reached"), ("pause", "look"), ("start", "go"),
        ("split", "all tf"), ("end", "done"),
    ]  # fmt: skip
    assert client.get("/admin/experiments/nope", headers=ADMIN).status_code == 404
    assert client.get(base).status_code == 401


def test_log_and_state_survive_a_restart(tmp_path: Path) -> None:
    store, data = make_store(tmp_path / "store"), tmp_path / "data"
    with _client(store, data_dir=str(data)) as first:
        served = _predict(first, 20)
        first.post(
            "/v1/feedback", json={"feedback": [{"request_id": r, "label": c} for r, _, c in served]}
        )
        first.post("/admin/experiments/toy-ab/pause", json={"reason": "r"}, headers=ADMIN)
        before = first.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    with _client(store, data_dir=str(data)) as second:
        after = second.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    assert after == before and after["status"] == "paused"
    assert sum(a["requests"] for a in after["arms"].values()) == 20


def test_shadow_sampling_logs_shadow_calls(tmp_path: Path) -> None:
    spec = {
        "id": "exp1",
        "model": "toy",
        "shadow_sample_rate": 1.0,
        "stop": {"sample_size_per_arm": 3},
    }
    with _client(make_store(tmp_path), experiments=[spec]) as client:
        _predict(client, 12)
        analysis = client.get("/admin/experiments/exp1", headers=ADMIN).json()
    compared = sum(a["shadow"]["compared"] for a in analysis["arms"].values())
    assert compared >= 1 and all(
        a["shadow"]["agreement"] in (None, 1.0) for a in analysis["arms"].values()
    )
    paired = analysis["paired"]  # the fakes answer alike: pairs, none discordant
    assert paired["pairs"] == compared and paired["disagreements"] == 0
    assert analysis["sample"]["size_per_arm"] == 3 and analysis["sample"]["reached"]
    assert analysis["status"] == "ended" and analysis["events"][-1]["reason"].startswith(
        "stop rule"
    )


def test_an_analysis_read_may_accept_the_latest_and_says_its_age(tmp_path: Path) -> None:
    with _client(make_store(tmp_path / "store"), data_dir=str(tmp_path / "data")) as client:
        _predict(client, 6)
        url = "/admin/experiments/toy-ab"
        fresh = client.get(url, headers=ADMIN)
        assert fresh.status_code == 200 and fresh.headers["age"] == "0"
        _predict(client, 6, prefix="s")
        cached = client.get(url, headers={**ADMIN, "Cache-Control": "max-age=3600"})
        assert cached.json()["arms"] == fresh.json()["arms"]  # the latest, not the new rows
        again = client.get(url, headers={**ADMIN, "Cache-Control": "no-cache"}).json()
        assert sum(a["requests"] for a in again["arms"].values()) == 12  # fresh: every row
        bad = client.get(url, headers={**ADMIN, "Cache-Control": "max-age=soon"})
        assert bad.status_code == 400 and "max-age" in bad.json()["error"]
