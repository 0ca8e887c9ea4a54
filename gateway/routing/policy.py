"""Turn a model's policy and a request into a routing decision."""

from __future__ import annotations

import random
from dataclasses import dataclass

from gateway.core.errors import BadRequest, Forbidden
from gateway.core.types import FRAMEWORKS, Framework, InferRequest, other
from gateway.routing.split import choose_arm
from gateway.settings import ModelPolicy


def parse_pin(value: str | None, where: str) -> Framework | None:
    """A client's pin (`X-Backend` header or `x-backend` metadata, named by `where`), or None
    when absent; anything but a framework name is the client's error."""
    if value is None:
        return None
    value = value.strip().lower()
    if value not in FRAMEWORKS:
        raise BadRequest(f"{where} must be one of {', '.join(FRAMEWORKS)}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Decision:
    """Who answers, who takes over on failure, who gets a mirrored copy."""

    primary: Framework
    fallback: Framework | None
    shadow: Framework | None


def decide(policy: ModelPolicy, request: InferRequest, rng: random.Random) -> Decision:
    """Pinning by the client first (if allowed), then the policy's mode."""
    if request.pinned is not None:
        if not policy.allow_pinning:
            raise Forbidden(f"model {request.model} does not allow pinning a framework")
        primary = request.pinned
    elif policy.mode == "weighted":
        primary = choose_arm(policy.weights, request.routing_key, policy.sticky, rng)
    else:
        primary = policy.primary
    # An experiment may mirror a sample of its weighted traffic too (`policy.mirror`).
    mirrored = (policy.mode == "shadow" or policy.mirror) and request.pinned is None
    shadow = other(primary) if mirrored and rng.random() < policy.shadow_sample_rate else None
    fallback = other(primary) if policy.failover else None
    return Decision(primary=primary, fallback=fallback, shadow=shadow)


def routing_key(request: InferRequest, policy: ModelPolicy) -> str | None:
    """The header key, else the configured request field, else none."""
    if request.routing_key:
        return request.routing_key
    if policy.routing_field:
        value = request.parameters.get(policy.routing_field)
        return None if value is None else str(value)
    return None
