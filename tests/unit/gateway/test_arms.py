"""Named arms (issue 22): the n-arm sticky split against a hand computation, the older
configs' forms, and pinning an arm by name."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway.app import create_app
from gateway.core.errors import BadRequest, Forbidden
from gateway.core.types import InferRequest
from gateway.experiments.manager import experiment_policy
from gateway.routing.policy import decide
from gateway.routing.split import choose_arm
from gateway.settings import ExperimentSpec, ExperimentsSettings, ModelPolicy
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ROW = {"instances": [[0.0, 5.0, 1.0, 2.0]]}
KEYS = [f"user-{i}" for i in range(2000)]
THREE = {
    "tf-v1": {"framework": "tensorflow", "version": 1},
    "tf-v2": {"framework": "tensorflow", "version": 2},
    "pt-v2": {"framework": "pytorch", "version": 2},
}


def _point(key: str) -> float:
    """The split's hash, written out again: blake2b-64 of the key, big-endian, / 2**64."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def _by_hand(key: str, bounds: list[tuple[float, str]]) -> str:
    """The first arm whose upper bound lies above the key's point."""
    return next(arm for upper, arm in bounds if _point(key) < upper)


def _assign(policy: ModelPolicy) -> dict[str, str]:
    rng = random.Random(0)
    return {k: decide(policy, InferRequest("m", {}, routing_key=k), rng).arm for k in KEYS}


def test_three_arms_split_by_their_intervals_in_configured_order() -> None:
    policy = ModelPolicy(arms=THREE, weights={"pt-v2": 50, "tf-v1": 20, "tf-v2": 30})
    # Intervals follow the arms' order (tf-v1, tf-v2, pt-v2), not the weights' order.
    bounds = [(0.2, "tf-v1"), (0.5, "tf-v2"), (1.0, "pt-v2")]
    assert _assign(policy) == {k: _by_hand(k, bounds) for k in KEYS}


def test_a_small_weight_change_moves_only_the_keys_between_the_old_and_new_bound() -> None:
    before = _assign(ModelPolicy(arms=THREE, weights={"tf-v1": 20, "tf-v2": 30, "pt-v2": 50}))
    after = _assign(ModelPolicy(arms=THREE, weights={"tf-v1": 20, "tf-v2": 35, "pt-v2": 45}))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if 0.5 <= _point(k) < 0.55}
    assert all((before[k], after[k]) == ("pt-v2", "tf-v2") for k in moved)


def test_the_decision_carries_the_arm_its_framework_and_version() -> None:
    policy = ModelPolicy(arms=THREE, weights={"tf-v1": 0, "tf-v2": 0, "pt-v2": 1})
    decision = decide(policy, InferRequest("m", {}, routing_key="u"), random.Random(0))
    assert (decision.arm, decision.primary, decision.version) == ("pt-v2", "pytorch", 2)
    # A failover goes to the other framework at the same version: the arm that serves it.
    assert decision.fallback == "tensorflow" and decision.arm_of("tensorflow") == "tf-v2"
    two = ModelPolicy(arms={"tf-v1": THREE["tf-v1"], "pt-v2": THREE["pt-v2"]})
    pinned = decide(two, InferRequest("m", {}, pinned_arm="pt-v2"), random.Random(0))
    assert pinned.arm_of("tensorflow") == "tensorflow"  # no TF arm at v2, none following latest


# --- the older configs: framework-keyed weights, two arms following `latest`

README_OVERRIDE = '{"weights": {"tensorflow": 90, "pytorch": 10}}'  # README's PATCH body
README_EXPERIMENTS = """
experiments:
  - {id: mlp-ab, model: digits-mlp, split: {tensorflow: 90, pytorch: 10},
     control: {framework: tensorflow}, candidate: {framework: pytorch},
     margins: {accuracy_points: 0.5, p99_ms: 1.0},
     shadow_sample_rate: 0.1, stop: {sample_size_per_arm: 5000}}
"""


def test_a_framework_keyed_policy_becomes_two_arms_following_latest() -> None:
    policy = ModelPolicy.model_validate(yaml.safe_load(README_OVERRIDE))
    assert {n: (a.framework, a.version) for n, a in policy.arms.items()} == {
        "tensorflow": ("tensorflow", None),
        "pytorch": ("pytorch", None),
    }
    # Routes as before arms had names: tensorflow owns [0, 0.9), pytorch the rest.
    bounds = [(0.9, "tensorflow"), (1.0, "pytorch")]
    assert _assign(policy) == {k: _by_hand(k, bounds) for k in KEYS}
    assert ModelPolicy().weights == {"tensorflow": 50.0, "pytorch": 50.0}


def test_the_readme_experiment_loads_as_two_arms_named_by_framework() -> None:
    settings = ExperimentsSettings.model_validate(yaml.safe_load(README_EXPERIMENTS))
    assert settings.experiments is not None
    spec = settings.experiments[0]
    assert (spec.control, spec.candidates, spec.split) == (
        "tensorflow",
        ["pytorch"],
        {"tensorflow": 90.0, "pytorch": 10.0},
    )
    policy = experiment_policy(spec, ModelPolicy())
    assert policy.weights == {"tensorflow": 90.0, "pytorch": 10.0}
    bounds = [(0.9, "tensorflow"), (1.0, "pytorch")]
    assert _assign(policy) == {k: _by_hand(k, bounds) for k in KEYS}


def test_old_arm_versions_pin_the_framework_arms() -> None:
    policy = ModelPolicy(arm_versions={"tensorflow": 1})
    assert (policy.arms["tensorflow"].version, policy.arms["pytorch"].version) == (1, None)


def test_the_old_two_arm_split_function_keeps_its_answers() -> None:
    rng = random.Random(0)
    weights = {"pytorch": 10.0, "tensorflow": 90.0}  # order of keys never mattered
    bounds = [(0.9, "tensorflow"), (1.0, "pytorch")]
    assert all(choose_arm(weights, k, True, rng) == _by_hand(k, bounds) for k in KEYS)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"arms": THREE, "weights": {"tf-v3": 1}}, "weights names tf-v3: no such arm"),
        ({"arms": THREE, "primary": "tensorflow"}, "primary: 'tensorflow' is no arm"),
        ({"arms": {"a b": {"framework": "pytorch"}}}, "arm name 'a b'"),
        ({"arms": {"x": {"framework": "onnx"}}}, "framework"),
        ({"arms": {"x": {"framework": "pytorch", "version": 0}}}, "version"),
    ],
)
def test_bad_arms_are_refused_naming_the_field(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelPolicy.model_validate(policy)


# --- pinning an arm by name


def test_x_arm_pins_the_arm_its_framework_and_version() -> None:
    policy = ModelPolicy(arms=THREE, weights={"tf-v1": 1, "tf-v2": 0, "pt-v2": 0})
    request = InferRequest("m", {}, routing_key="u", pinned_arm="tf-v2")
    decision = decide(policy, request, random.Random(0))
    assert (decision.arm, decision.primary, decision.version) == ("tf-v2", "tensorflow", 2)
    assert decision.shadow is None


def test_an_unknown_arm_is_a_400_naming_the_header_and_the_known_arms() -> None:
    request = InferRequest("m", {}, pinned_arm="tf-v9")
    with pytest.raises(BadRequest) as caught:
        decide(ModelPolicy(arms=THREE), request, random.Random(0))
    assert "X-Arm" in caught.value.message and "x-arm" in caught.value.message
    assert "known arms: pt-v2, tf-v1, tf-v2" in caught.value.message


def test_pinning_an_arm_obeys_allow_pinning() -> None:
    request = InferRequest("m", {}, pinned_arm="tf-v1")
    with pytest.raises(Forbidden, match="does not allow pinning"):
        decide(ModelPolicy(arms=THREE, allow_pinning=False), request, random.Random(0))


def test_x_backend_still_pins_a_framework_and_is_logged_as_its_arm() -> None:
    request = InferRequest("m", {}, pinned="pytorch")
    decision = decide(ModelPolicy(), request, random.Random(0))
    assert (decision.primary, decision.arm, decision.version) == ("pytorch", "pytorch", None)


def test_rest_x_arm_answers_from_the_arm_and_names_the_known_arms(tmp_path: Path) -> None:
    arms = {"tf-v1": {"framework": "tensorflow", "version": 1}, "pt-v2": THREE["pt-v2"]}
    policy = {"toy": {"arms": arms, "weights": {"tf-v1": 0, "pt-v2": 1}}}
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    app = create_app(settings_for(make_store(tmp_path), models=policy), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as client:
        pinned = client.post("/v1/models/toy:predict", json=ROW, headers={"X-Arm": "tf-v1"})
        assert pinned.status_code == 200, pinned.text
        assert (pinned.headers["X-Backend"], pinned.headers["X-Model-Version"]) == (
            "tensorflow",
            "1",
        )
        split = client.post("/v1/models/toy:predict", json=ROW, headers={"X-Routing-Key": "u"})
        assert (split.headers["X-Backend"], split.headers["X-Model-Version"]) == ("pytorch", "2")
        bad = client.post("/v1/models/toy:predict", json=ROW, headers={"X-Arm": "tf-v9"})
        assert bad.status_code == 400
        assert "X-Arm" in bad.json()["error"] and "known arms: pt-v2, tf-v1" in bad.json()["error"]


def test_an_experiment_stored_by_an_older_gateway_loads_as_named_arms() -> None:
    stored = (
        '{"id": "e", "model": "m", "arms": [{"framework": "tensorflow", "version": 1},'
        ' {"framework": "pytorch", "version": null}], "control": {"framework": "tensorflow",'
        ' "version": 1}, "candidate": {"framework": "pytorch", "version": null},'
        ' "split": {"tensorflow": 90, "pytorch": 10}, "sticky": true}'
    )
    spec = ExperimentSpec.model_validate_json(stored)
    assert {n: (a.framework, a.version) for n, a in spec.arms.items()} == {
        "tensorflow": ("tensorflow", 1),
        "pytorch": ("pytorch", None),
    }
    assert (spec.control, spec.candidates, spec.candidate) == ("tensorflow", ["pytorch"], "pytorch")
    assert ExperimentSpec.model_validate_json(spec.model_dump_json()) == spec


def test_an_override_naming_a_missing_build_is_a_400_naming_the_arm(tmp_path: Path) -> None:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    body = {"policy": {"arms": {"tf-v9": {"framework": "tensorflow", "version": 9}},
                       "weights": {"tf-v9": 1}, "primary": "tf-v9"}}  # fmt: skip
    with TestClient(app) as client:
        reply = client.patch(
            "/admin/models/toy/policy", json=body, headers={"Authorization": "Bearer admin-secret"}
        )
    assert reply.status_code == 400
    assert reply.json()["error"] == "arms.tf-v9: model toy has no tensorflow build of version 9"
