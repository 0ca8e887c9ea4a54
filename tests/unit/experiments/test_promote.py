"""Three named arms through the app, and promoting one (issue 22): the refusals, the
force, the `promoted` layer, the model events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dualserve.cli import app
from dualserve.promotion import record_retire
from gateway.app import create_app
from gateway.experiments.log.records import Event
from gateway.experiments.promote import PromoteRefused, check_running
from gateway.settings import ExperimentSpec
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}
ROW = {"instances": [[5.0, 0.0, 0.0, 0.0]]}
ARMS = {
    "tf-v1": {"framework": "tensorflow", "version": 1},
    "tf-v2": {"framework": "tensorflow", "version": 2},
    "pt-v2": {"framework": "pytorch", "version": 2},
}
EXPERIMENT = {"id": "abn", "model": "toy", "arms": ARMS, "control": "tf-v1",
              "split": {"tf-v1": 40, "tf-v2": 30, "pt-v2": 30}}  # fmt: skip
WHO = {"tf-v1": ("tensorflow", "1"), "tf-v2": ("tensorflow", "2"), "pt-v2": ("pytorch", "2")}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    experiments = {"flush_interval_s": 0.01, "experiments": [EXPERIMENT]}
    settings = settings_for(make_store(tmp_path), experiments=experiments)
    with TestClient(create_app(settings, upstreams)) as c:  # type: ignore[arg-type]
        yield c


def _predict(client: TestClient, key: str, **headers: str) -> tuple[str, str]:
    reply = client.post(
        "/v1/models/toy:predict", json=ROW, headers={"X-Routing-Key": key, **headers}
    )
    assert reply.status_code == 200, reply.text
    return reply.headers["X-Backend"], reply.headers["X-Model-Version"]


def _promote(client: TestClient, arm: str, **extra: Any) -> Any:
    body = {"arm": arm, "reason": "test", **extra}
    return client.post("/admin/models/toy/promote", json=body, headers=ADMIN)


def test_three_arms_are_split_sticky_logged_and_analysed_by_name(client: TestClient) -> None:
    seen = {key: _predict(client, key) for key in (f"user-{i}" for i in range(60))}
    assert set(seen.values()) == set(WHO.values())  # every arm got users
    assert all(_predict(client, key) == who for key, who in seen.items())  # sticky
    analysis = client.get("/admin/experiments/abn", headers=ADMIN).json()
    assert (analysis["control"], analysis["candidates"]) == ("tf-v1", ["tf-v2", "pt-v2"])
    assert set(analysis["comparisons"]) == {"tf-v2", "pt-v2"}
    counts = {arm: sum(who == WHO[arm] for who in seen.values()) * 2 for arm in ARMS}
    assert {arm: f["requests"] for arm, f in analysis["arms"].items()} == counts


def test_promote_is_refused_while_the_experiment_runs_and_forced_ends_it(
    client: TestClient,
) -> None:
    unknown = _promote(client, "tf-v9")
    assert unknown.status_code == 400
    assert "known arms: pt-v2, pytorch, tensorflow, tf-v1, tf-v2" in unknown.json()["error"]
    refused = _promote(client, "pt-v2")
    assert refused.status_code == 409
    message = refused.json()["error"]
    assert "experiment abn on model toy is still running" in message and "--force" in message
    forced = _promote(client, "pt-v2", force=True)
    assert forced.status_code == 200, forced.text
    assert forced.json()["source"] == "promoted"
    assert client.get("/admin/experiments/abn", headers=ADMIN).json()["status"] == "ended"
    assert {_predict(client, f"user-{i}") for i in range(20)} == {("pytorch", "2")}
    assert _predict(client, "u", **{"X-Arm": "tf-v1"}) == ("tensorflow", "1")  # still pinnable
    (event,) = client.get("/admin/models/toy/events", headers=ADMIN).json()["events"]
    assert (event["action"], event["arm"], event["version"]) == ("promote", "pt-v2", 2)
    assert event["details"]["ended_experiment"] == "abn" and event["details"]["forced"]


def test_promote_without_a_running_experiment_needs_no_force(client: TestClient) -> None:
    end = client.post("/admin/experiments/abn/end", json={"reason": "done"}, headers=ADMIN)
    assert end.status_code == 200
    promoted = _promote(client, "tf-v2")
    assert promoted.status_code == 200 and promoted.json()["effective"]["primary"] == "tf-v2"
    assert {_predict(client, f"user-{i}") for i in range(20)} == {("tensorflow", "2")}
    details = promoted.json()["event"]["details"]
    assert (details["ended_experiment"], details["forced"]) == (None, False)


def _step(share: float, kind: str) -> Event:
    return Event("abn", "rollout", "r", {"kind": kind, "share": share, "step": 1}, 2.0)


def test_a_rollout_at_100_percent_of_that_arm_may_be_promoted_and_nothing_else() -> None:
    spec = ExperimentSpec.model_validate(
        {k: v for k, v in EXPERIMENT.items() if k != "split"}
        | {"rollout": {"candidate": "pt-v2", "steps": [10, 100]}}
    )
    start = Event("abn", "start", "s", {}, 1.0)
    done = [start, _step(100.0, "advance")]
    assert check_running(spec, done, "pt-v2", force=False) is None
    with pytest.raises(PromoteRefused, match=re.escape("its rollout of pt-v2 is at 100.0%")):
        check_running(spec, done, "tf-v2", force=False)  # not the arm rolled out
    halfway = [start, _step(10.0, "advance")]
    with pytest.raises(PromoteRefused, match=re.escape("at 10.0% (advance)")):
        check_running(spec, halfway, "pt-v2", force=False)
    rolled_back = [start, _step(0.0, "rollback")]
    with pytest.raises(PromoteRefused, match=re.escape("at 0.0% (rollback)")):
        check_running(spec, rolled_back, "pt-v2", force=False)
    assert check_running(spec, rolled_back, "pt-v2", force=True) == "forced"
    restarted = [*done, Event("abn", "start", "again", {}, 3.0)]  # a new rollout begins
    with pytest.raises(PromoteRefused, match="not begun"):
        check_running(spec, restarted, "pt-v2", force=False)


def test_a_retirement_is_a_model_event_the_cli_lists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.sqlite3'}"
    record_retire(url, "toy", 1, ["tensorflow: moved v1", "pytorch: unregistered v1"])
    listed = CliRunner().invoke(app, ["events", "toy", "--db", url, "--json"])
    assert listed.exit_code == 0, listed.output
    (event,) = json.loads(listed.output)
    assert (event["model"], event["action"], event["version"], event["arm"]) == (
        "toy",
        "retire",
        1,
        None,
    )
    assert event["details"]["done"] == ["tensorflow: moved v1", "pytorch: unregistered v1"]
    assert (
        json.loads(CliRunner().invoke(app, ["events", "other", "--db", url, "--json"]).output) == []
    )
    table = CliRunner().invoke(app, ["events", "--db", url])
    assert "retire" in table.output and "v1" in table.output


def test_promote_without_a_running_stack_exits_1_with_a_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["promote", "toy", "tf-v2", "--run-dir", str(tmp_path)])
    assert result.exit_code == 1 and "nothing is running" in result.output
