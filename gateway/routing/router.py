"""The router: pick the arm by the model's policy, call it, fail over, mirror, emit.

It knows nothing about wire formats (requests arrive as `InferRequest`), nothing about
transports (upstreams hide them), and nothing about who observes its calls: every
upstream call ends in one `CallOutcome` handed to `emit` (see `gateway.core.outcome`).
Policies are read from the policy store's in-memory snapshot, one lookup per request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from gateway.catalog import Catalog, ModelInfo, validate
from gateway.core.errors import (
    DeadlineExceeded,
    GatewayError,
    NotFound,
    UpstreamError,
    UpstreamRejected,
)
from gateway.core.outcome import CallKind, CallOutcome, Comparison, Observer, compare
from gateway.core.types import (
    FRAMEWORKS,
    Framework,
    InferRequest,
    InferResponse,
    TraceContext,
    other,
)
from gateway.edge.deadline import budget
from gateway.routing.breaker import CircuitBreaker
from gateway.routing.policy import Decision, decide, routing_key
from gateway.routing.policy_store import LayerName, Route
from gateway.settings import GatewaySettings
from gateway.telemetry import tracing
from gateway.upstreams.base import Upstream

# Hand a mirrored call to the background (model, job); False when it had to be dropped.
Mirror = Callable[[str, Callable[[], Awaitable[None]]], bool]


class Policies(Protocol):
    """The router's view of the policy store."""

    def route(self, model: str) -> Route: ...


class _Routed(NamedTuple):
    """One request's routing facts, shared by its calls' outcomes (a tuple: built on every
    request, at a third of a frozen dataclass's cost)."""

    request: InferRequest
    layer: LayerName
    started: float


def _fails_over(error: GatewayError) -> bool:
    """A backend failure the other arm may answer instead; not a request the backend
    rejected (it would reject it on the other arm too)."""
    return isinstance(error, UpstreamError) and not isinstance(error, UpstreamRejected)


class Router:
    """Routes every prediction by the policy store's effective policy."""

    def __init__(
        self,
        catalog: Catalog,
        upstreams: Mapping[Framework, Upstream],
        settings: GatewaySettings,
        policies: Policies,
        emit: Observer,
        mirror: Mirror | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.policies = policies
        self.breakers = {fw: CircuitBreaker(settings.breaker, fw) for fw in FRAMEWORKS}
        self.timeouts = {
            fw: settings.upstream_settings(settings.server_of(fw)).timeout_s for fw in FRAMEWORKS
        }
        self.min_breaker_timeout = settings.breaker.min_timeout_s
        self._emit_outcome = emit
        self._mirror = mirror
        self._rng = rng or random.Random()

    def prepare(self, request: InferRequest, strict_dtype: bool) -> ModelInfo:
        """Resolve the version and validate the tensors; nothing has left the gateway yet."""
        info = self.catalog.get(request.model)
        request.version = info.resolve_version(
            request.version, request.version_label, request.pinned
        )
        request.version_label = None
        validate(request, info, strict_dtype)
        return info

    async def infer(self, request: InferRequest, strict_dtype: bool = False) -> InferResponse:
        """Answer `request` from the arm its model's policy picks (see `Decision`). With
        tracing on, the caller's span is the `route` span (`DataPlane.infer`): the
        decision goes on it, each call's kind on the request's trace context."""
        started = time.perf_counter()
        unversioned = request.version is None and request.version_label is None
        info = self.prepare(request, strict_dtype)
        route = self.policies.route(request.model)
        policy = route.policy
        request.routing_key = routing_key(request, policy)
        decision = decide(policy, request, self._rng)
        if decision.version is not None and unversioned:  # the arm names its version
            request.version = decision.version
        # A version that left the store since the policy named it: the client's 404.
        arms = info.versions.get(info.resolve_version(request.version, None), ())
        routed = _Routed(request, route.layer, started)
        if request.trace is not None and request.trace.span is not None:
            _trace_decision(request.trace.span, routed, decision)
        try:
            response = await self._answer(routed, decision, arms)
        except NotFound:
            arms = await self._look_again(request, unversioned and decision.version is None)
            if not arms:
                raise
            response = await self._answer(routed, decision, arms)
        shadow = decision.shadow
        if shadow is not None and shadow in arms and shadow != response.backend:
            self._submit_shadow(shadow, decision.arm_of(shadow), routed, response)
        return response.select(request.outputs)

    async def _look_again(self, request: InferRequest, re_resolve: bool) -> tuple[Framework, ...]:
        """After a backend's not-found: the catalog looks at the backends now; when that
        changed it, the arms that serve the request's version (for a request that named
        none, `re_resolve`: the version routed now), else none (the 404 stands)."""
        if not await self.catalog.refresh(request.model):
            return ()
        info = self.catalog.get(request.model)
        if re_resolve:
            request.version = info.resolve_version(None, None, request.pinned)
        return info.versions.get(request.version or 0, ())

    async def _answer(
        self, routed: _Routed, decision: Decision, arms: tuple[Framework, ...]
    ) -> InferResponse:
        request, primary, name = routed.request, decision.primary, decision.arm
        pinned = request.pinned is not None or request.pinned_arm is not None
        if primary not in arms:
            if pinned:
                raise NotFound(f"{request.model} version {request.version} has no {primary} build")
            primary = other(primary)
            name = decision.arm_of(primary)
        fallback = decision.fallback
        # A client that pinned a framework or an arm asked for it: no failover.
        if fallback not in arms or fallback == primary or pinned:
            fallback = None
        tried = time.perf_counter()
        try:
            can_fail_over = fallback is not None
            return await self._call("primary", primary, name, routed, can_fail_over)
        except UpstreamError as exc:
            if fallback is None or not _fails_over(exc):
                raise
        spent = time.perf_counter() - tried  # the failed attempt: upstream time, not ours
        response = await self._call("failover", fallback, decision.arm_of(fallback), routed, False)
        response.failover = True
        response.timings["upstream"] = response.timings.get("upstream", 0.0) + spent
        return response

    async def _call(
        self, kind: CallKind, arm: Framework, name: str, routed: _Routed, can_fail_over: bool
    ) -> InferResponse:
        begun = time.perf_counter()
        if routed.request.trace is not None:  # the upstream attempts' spans name it
            routed.request.trace.call = kind
        # With a failover possible, the first attempt may spend half of the client's time.
        share = 0.5 if can_fail_over else 1.0
        try:
            response = await self.call_arm(arm, routed.request, share)
        except GatewayError as exc:
            final = not (can_fail_over and _fails_over(exc))
            self._emit(kind, arm, name, routed, begun, final, error=exc)
            raise
        self._emit(kind, arm, name, routed, begun, True, response=response)
        return response

    async def call_arm(
        self, arm: Framework, request: InferRequest, share: float = 1.0
    ) -> InferResponse:
        """One upstream call through the arm's breaker (no outcome: callers emit it).

        Args:
            share: the part of the time left before the client's deadline this attempt
                may spend (the rest is kept for a failover).

        Raises:
            DeadlineExceeded: no time was left, or the attempt had less than
                `breaker.min_timeout_s` and failed in any way but a rejection (the
                client's doing: no verdict, never a 503; issue 24).
            BreakerOpen: the arm's breaker refuses calls now.
            UpstreamError: the backend failed (counted by the arm's breaker).
        """
        timeout = budget(self.timeouts[arm], request.deadline, share)
        return await self.breakers[arm].call(lambda: self._attempt(arm, request, timeout))

    async def _attempt(
        self, arm: Framework, request: InferRequest, timeout: float
    ) -> InferResponse:
        try:
            return await self.upstreams[arm].infer(request, timeout)
        except UpstreamRejected:
            raise
        except UpstreamError as exc:  # a timeout, or a call torn down at its deadline
            if timeout < self.min_breaker_timeout:  # too short to blame the backend
                raise DeadlineExceeded(f"{arm}: the request's deadline passed") from exc
            raise

    def _submit_shadow(
        self, arm: Framework, name: str, routed: _Routed, answer: InferResponse
    ) -> None:
        if self._mirror is None:
            return
        outputs = answer.outputs  # before `select` narrows the client's copy
        trace = tracing.for_shadow(routed.request.trace)

        async def job() -> None:
            await self._shadow(arm, name, routed, outputs, trace)

        self._mirror(routed.request.model, job)

    async def _shadow(
        self,
        arm: Framework,
        name: str,
        routed: _Routed,
        answer: dict[str, np.ndarray],
        trace: TraceContext | None,
    ) -> None:
        """The mirrored call, off the reply's path; its outcome carries the comparison. It
        carries the client's trace context too (`tracing.for_shadow`)."""
        # The mirror answers nobody: the client's deadline does not bound it.
        request = replace(routed.request, deadline=None, trace=trace)
        routed = _Routed(request, routed.layer, time.perf_counter())
        try:
            shadow = await self.call_arm(arm, routed.request)
        except GatewayError as exc:
            self._emit("shadow", arm, name, routed, routed.started, False, error=exc)
            return
        result = compare(answer, shadow.outputs)
        self._emit(
            "shadow", arm, name, routed, routed.started, False, response=shadow, comparison=result
        )

    def _emit(
        self,
        kind: CallKind,
        arm: Framework,
        name: str,
        routed: _Routed,
        begun: float,
        final: bool,
        error: GatewayError | None = None,
        response: InferResponse | None = None,
        comparison: Comparison | None = None,
    ) -> None:
        """The one site that builds outcomes."""
        now = time.perf_counter()
        self._emit_outcome(
            CallOutcome(
                kind=kind,
                request=routed.request,
                arm=arm,
                layer=routed.layer,
                final=final,
                latency_s=now - begun,
                elapsed_s=now - routed.started,
                status=200 if error is None else int(error.status),
                error=None if error is None else type(error).__name__,
                response=response,
                breaker=int(self.breakers[arm].state),
                comparison=comparison,
                arm_name=name,
            )
        )

    async def ready(self, model: str) -> dict[Framework, bool]:
        """Readiness per arm for `model`: its backend serves some version of it (the
        catalog's picture), answers its readiness probe, and its breaker is not open."""
        return {
            arm: self.breakers[arm].accepting
            and self.catalog.serves(model, arm)
            and await self._upstream_ready(arm, model)
            for arm in FRAMEWORKS
        }

    async def _upstream_ready(self, arm: Framework, model: str) -> bool:
        try:
            return await self.upstreams[arm].ready(model)
        except Exception:  # readiness probes must answer, whatever the backend does
            return False


def _trace_decision(span: Any, routed: _Routed, decision: Decision) -> None:
    """The route decision on the `route` span (tracing on)."""
    span.set_attributes(
        {
            "dualserve.policy.layer": routed.layer,
            "dualserve.arm": decision.primary,
            "dualserve.fallback": decision.fallback or "",
            "dualserve.shadow": decision.shadow or "",
            "dualserve.pinned": routed.request.pinned or "",
            "dualserve.version": routed.request.version or 0,
        }
    )
