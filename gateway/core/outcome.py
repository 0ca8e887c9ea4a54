"""One outcome per routed call: the router emits it, observers subscribe to it.

The router calls an upstream three ways: the `primary` arm its policy picked, the
`failover` arm after the primary failed, and the `shadow` arm with a mirrored copy. Each
call ends in one `CallOutcome`, built once, by keyword, at one site
(`Router._emit`); metrics, live statistics and the prediction log are observers wired
together in the composition root (`gateway.app.build_context`). Neither the router nor
the observers know about each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gateway.core.types import Framework, InferRequest, InferResponse

logger = logging.getLogger(__name__)
CallKind = Literal["primary", "failover", "shadow"]


@dataclass(frozen=True, slots=True)
class Comparison:
    """A shadow answer against the client's answer: top-1 agreement, largest
    |probability difference|."""

    agreed: bool
    max_abs_diff: float


def compare(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> Comparison:
    """Top-1 agreement on `class` (or the argmax of `probabilities`) and the largest
    absolute difference of `probabilities`."""
    agreed = bool(np.array_equal(_top1(primary), _top1(shadow)))
    diff = 0.0
    if "probabilities" in primary and "probabilities" in shadow:
        diff = float(np.max(np.abs(primary["probabilities"] - shadow["probabilities"])))
    return Comparison(agreed, diff)


def _top1(outputs: dict[str, np.ndarray]) -> np.ndarray:
    if "class" in outputs:
        return np.asarray(outputs["class"]).reshape(-1)
    return np.argmax(outputs["probabilities"], axis=-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOutcome:
    """One upstream call made by the router.

    Attributes:
        kind: `primary`, `failover` (the other arm after the primary failed) or `shadow`.
        request: the routed request (model, request id, routing key, pin).
        arm: the framework called.
        layer: the policy layer that routed the request (`configured`, `experiment`,
            `override`); observers use it to tell randomised traffic from the rest.
        final: this call's answer or error is what the client got (False for a failed
            primary that a failover call follows, and for shadow calls).
        latency_s: this call, seconds from the breaker check to the reply or error.
        elapsed_s: seconds since the router took the request (includes a failed primary
            before a failover); the shadow call's own time for shadow calls.
        status: 200, or the HTTP status of the error.
        error: the error's kind (`BreakerOpen`, `UpstreamTimeout`, ...), None on success.
        response: the backend's answer, None on errors.
        breaker: the arm's breaker state after the call (`BreakerState` value).
        comparison: shadow calls: the shadow answer against the client's answer.
        ts: wall-clock time of the outcome, seconds since the epoch.
        arm_name: the named arm (`gateway.core.arms`) the call counts for: the routed
            arm, or for a failover or shadow call the arm of that framework at the
            request's version (else the framework's name); "" when not routed by a policy.
    """

    kind: CallKind
    request: InferRequest
    arm: Framework
    layer: str
    final: bool
    latency_s: float
    elapsed_s: float
    status: int
    error: str | None
    response: InferResponse | None
    breaker: int
    comparison: Comparison | None = None
    ts: float = field(default_factory=time.time)
    arm_name: str = ""

    @property
    def version(self) -> int | None:
        return self.response.version if self.response is not None else self.request.version


Observer = Callable[[CallOutcome], None]


def fan_out(observers: Sequence[Observer]) -> Observer:
    """One emitter calling every observer in order; a failing observer is logged and the
    others still run (an observer must never fail the client's request)."""
    chain = tuple(observers)

    def emit(outcome: CallOutcome) -> None:
        for observer in chain:
            try:
                observer(outcome)
            except Exception:
                logger.exception("outcome observer %r failed", observer)

    return emit
