"""Split, stickiness and policy decisions, without any server (breakers: test_breaker.py)."""

from __future__ import annotations

import random

import pytest

from gateway.core.errors import Forbidden
from gateway.core.types import InferRequest
from gateway.routing.policy import decide
from gateway.routing.split import choose_arm
from gateway.settings import ModelPolicy

KEYS = [f"user-{i}" for i in range(1000)]


def _assign(weights: dict[str, float]) -> dict[str, str]:
    rng = random.Random(0)
    return {key: choose_arm(weights, key, True, rng) for key in KEYS}  # type: ignore[arg-type]


def test_sticky_split_is_balanced_and_stable() -> None:
    first = _assign({"tensorflow": 50, "pytorch": 50})
    share = sum(arm == "tensorflow" for arm in first.values()) / len(KEYS)
    assert 0.45 <= share <= 0.55
    assert _assign({"tensorflow": 50, "pytorch": 50}) == first


def test_changing_the_split_moves_only_the_users_it_must() -> None:
    before = _assign({"tensorflow": 90, "pytorch": 10})
    after = _assign({"tensorflow": 80, "pytorch": 20})
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == "tensorflow" and after[k] == "pytorch" for k in moved)
    assert 0.07 <= len(moved) / len(KEYS) <= 0.13


def test_zero_weight_arm_gets_nothing() -> None:
    assert set(_assign({"tensorflow": 0, "pytorch": 1}).values()) == {"pytorch"}


def test_pinning_header_respects_the_policy() -> None:
    request = InferRequest(model="toy", inputs={}, pinned="pytorch")
    rng = random.Random(0)
    assert decide(ModelPolicy(), request, rng).primary == "pytorch"
    with pytest.raises(Forbidden, match="does not allow pinning"):
        decide(ModelPolicy(allow_pinning=False), request, rng)


def test_shadow_mirrors_to_the_other_arm_and_failover_is_optional() -> None:
    request = InferRequest(model="toy", inputs={})
    decision = decide(ModelPolicy(mode="shadow", primary="pytorch"), request, random.Random(0))
    assert (decision.primary, decision.shadow, decision.fallback) == (
        "pytorch",
        "tensorflow",
        "tensorflow",
    )
    plain = decide(ModelPolicy(mode="pinned", failover=False), request, random.Random(0))
    assert (plain.primary, plain.shadow, plain.fallback) == ("tensorflow", None, None)


def test_weights_must_be_usable() -> None:
    with pytest.raises(ValueError, match="weights"):
        ModelPolicy(weights={"tensorflow": 0, "pytorch": 0})
