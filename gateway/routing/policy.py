"""Turn a model's policy and a request into a routing decision."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import NamedTuple

from gateway.core.arms import Arm, known, name_of
from gateway.core.errors import BadRequest, Forbidden
from gateway.core.types import FRAMEWORKS, Framework, InferRequest, ServerKind, other
from gateway.routing.split import arm_at, key_point, policy_bounds
from gateway.settings import ModelPolicy

PIN_ARM_WHERE = "header X-Arm (gRPC metadata x-arm)"


def parse_pin(value: str | None, where: str) -> Framework | None:
    """A client's pin (`X-Backend` header or `x-backend` metadata, named by `where`), or None
    when absent; anything but a framework name is the client's error."""
    if value is None:
        return None
    value = value.strip().lower()
    if value not in FRAMEWORKS:
        raise BadRequest(f"{where} must be one of {', '.join(FRAMEWORKS)}")
    return value  # type: ignore[return-value]


def parse_arm_pin(value: str | None) -> str | None:
    """A client's arm pin (`X-Arm` header or `x-arm` metadata), or None when absent; the
    router checks the name against the model's arms (`decide`)."""
    if value is None:
        return None
    return value.strip()


class Decision(NamedTuple):
    """Who answers, who takes over on failure, who gets a mirrored copy (a tuple: built
    on every request, at a fraction of a frozen dataclass's cost).

    Attributes:
        primary, fallback, shadow: the frameworks called.
        arm: the arm the request was routed to (its name: what the log and the analysis
            count it as).
        version: the arm's version, None when it follows `latest`.
        arms: the policy's arms, to name the arm of a failover or shadow call
            (`arm_of`), only when one is made.
        server: the server the primary call goes to when the arm names one, else None
            (the framework's configured server; failover and shadow calls always go to
            the other framework's configured server).
    """

    primary: Framework
    fallback: Framework | None
    shadow: Framework | None
    arm: str = ""
    version: int | None = None
    arms: Mapping[str, Arm] | None = None
    server: ServerKind | None = None

    def arm_of(self, framework: Framework, server: ServerKind | None = None) -> str:
        """What a call to `framework` for this request is logged as: the arm of that
        framework at the routed arm's version (else one following `latest`), else the
        framework's name (`arms.name_of`)."""
        return name_of(self.arms or {}, framework, self.version, server)


def _pinned_arm(policy: ModelPolicy, request: InferRequest) -> str:
    name = request.pinned_arm or ""
    if name not in policy.arms:
        raise BadRequest(
            f"{PIN_ARM_WHERE}: {name!r} is no arm of {request.model}; {known(policy.arms)}"
        )
    return name


def _arm_name(policy: ModelPolicy, request: InferRequest, rng: random.Random) -> str:
    """The arm by the client's pin (if allowed), else by the policy's mode."""
    if request.pinned is not None or request.pinned_arm is not None:
        if not policy.allow_pinning:
            raise Forbidden(f"model {request.model} does not allow pinning a framework or arm")
        if request.pinned_arm is not None:
            return _pinned_arm(policy, request)
        return name_of(policy.arms, request.pinned, None) if request.pinned else ""
    if policy.mode == "weighted":
        key = request.routing_key
        point = key_point(key) if policy.sticky and key else rng.random()
        return arm_at(point, policy_bounds(policy.weights, policy.arms))
    return policy.primary


def decide(policy: ModelPolicy, request: InferRequest, rng: random.Random) -> Decision:
    """Pinning by the client first (if allowed), then the policy's mode."""
    name = _arm_name(policy, request, rng)
    arm = policy.arms.get(name)
    primary: Framework = request.pinned or (arm.framework if arm else "tensorflow")
    version = arm.version if arm is not None and request.pinned is None else None
    server = arm.server if arm is not None and request.pinned is None else None
    # An experiment may mirror a sample of its weighted traffic too (`policy.mirror`).
    unpinned = request.pinned is None and request.pinned_arm is None
    mirrored = (policy.mode == "shadow" or policy.mirror) and unpinned
    shadow = other(primary) if mirrored and rng.random() < policy.shadow_sample_rate else None
    fallback = other(primary) if policy.failover else None
    return Decision(primary, fallback, shadow, name, version, policy.arms, server)


def routing_key(request: InferRequest, policy: ModelPolicy) -> str | None:
    """The header key, else the configured request field, else none."""
    if request.routing_key:
        return request.routing_key
    if policy.routing_field:
        value = request.parameters.get(policy.routing_field)
        return None if value is None else str(value)
    return None
