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
    UpstreamUnavailable,
)
from gateway.core.outcome import CallKind, CallOutcome, Comparison, Observer, compare
from gateway.core.types import (
    FRAMEWORKS,
    Framework,
    InferRequest,
    InferResponse,
    ServerKind,
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
Backend = tuple[Framework, ServerKind]
"""An upstream's key beside the framework's own: a framework on a server that is not its
configured one (an arm that names its `server`, e.g. pytorch on `oip`)."""


class _Lane(NamedTuple):
    """One backend's client, breaker and per-attempt timeout."""

    upstream: Upstream
    breaker: CircuitBreaker
    timeout_s: float


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
        server_upstreams: Mapping[Backend, Upstream] | None = None,
    ) -> None:
        """`upstreams`: each framework's client to its configured server;
        `server_upstreams`: the clients of arms that name another server (keyed by
        (framework, server)), each with its own breaker and timeout."""
        self.catalog = catalog
        self.upstreams = upstreams
        self.policies = policies
        self.breakers = {fw: CircuitBreaker(settings.breaker, fw) for fw in FRAMEWORKS}
        self.timeouts = {
            fw: settings.upstream_settings(settings.server_of(fw)).timeout_s for fw in FRAMEWORKS
        }
        self.servers: dict[Framework, ServerKind] = {
            fw: settings.server_of(fw) for fw in FRAMEWORKS
        }
        self.lanes: dict[Backend, _Lane] = {
            (fw, server): _Lane(
                upstream,
                CircuitBreaker(settings.breaker, f"{fw}@{server}"),
                settings.upstream_settings(server).timeout_s,
            )
            for (fw, server), upstream in (server_upstreams or {}).items()
            if server != self.servers[fw]
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
        if decision.server is not None and decision.server != self.servers[decision.primary]:
            arms = _on_server(info, decision, arms, request.version)
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
            self._submit_shadow(
                shadow, decision.arm_of(shadow, self.servers[shadow]), routed, response
            )
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
                on = "" if decision.server is None else f" on {decision.server}"
                raise NotFound(
                    f"{request.model} version {request.version} has no {primary} build{on}"
                )
            primary = other(primary)
            name = decision.arm_of(primary, self.servers[primary])
            decision = decision._replace(server=None)
        fallback = decision.fallback
        # A client that pinned a framework or an arm asked for it: no failover.
        if fallback not in arms or fallback == primary or pinned:
            fallback = None
        tried = time.perf_counter()
        try:
            can_fail_over = fallback is not None
            return await self._call(
                "primary", primary, name, routed, can_fail_over, decision.server
            )
        except UpstreamError as exc:
            if fallback is None or not _fails_over(exc):
                raise
        spent = time.perf_counter() - tried  # the failed attempt: upstream time, not ours
        response = await self._call(
            "failover", fallback, decision.arm_of(fallback, self.servers[fallback]), routed, False
        )
        response.failover = True
        response.timings["upstream"] = response.timings.get("upstream", 0.0) + spent
        return response

    async def _call(
        self,
        kind: CallKind,
        arm: Framework,
        name: str,
        routed: _Routed,
        can_fail_over: bool,
        server: ServerKind | None = None,
    ) -> InferResponse:
        begun = time.perf_counter()
        if routed.request.trace is not None:  # the upstream attempts' spans name it
            routed.request.trace.call = kind
        # With a failover possible, the first attempt may spend half of the client's time.
        share = 0.5 if can_fail_over else 1.0
        try:
            response = await self.call_arm(arm, routed.request, share, server)
        except GatewayError as exc:
            final = not (can_fail_over and _fails_over(exc))
            self._emit(kind, arm, name, routed, begun, final, error=exc, server=server)
            raise
        self._emit(kind, arm, name, routed, begun, True, response=response, server=server)
        return response

    async def call_arm(
        self,
        arm: Framework,
        request: InferRequest,
        share: float = 1.0,
        server: ServerKind | None = None,
    ) -> InferResponse:
        """One upstream call through the arm's breaker (no outcome: callers emit it).

        Args:
            share: the part of the time left before the client's deadline this attempt
                may spend (the rest is kept for a failover).
            server: the arm's own server when it names one, else None (the framework's
                configured server).

        Raises:
            DeadlineExceeded: no time was left, or the attempt had less than
                `breaker.min_timeout_s` and failed in any way but a rejection (the
                client's doing: no verdict, never a 503; issue 24).
            BreakerOpen: the arm's breaker refuses calls now.
            UpstreamError: the backend failed (counted by the arm's breaker).
            UpstreamUnavailable: the arm names a server the gateway has no client for.
        """
        lane = self.lane(arm, server)
        timeout = budget(lane.timeout_s, request.deadline, share)
        return await lane.breaker.call(lambda: self._attempt(lane, arm, request, timeout))

    def lane(self, arm: Framework, server: ServerKind | None = None) -> _Lane:
        """The client, breaker and timeout of `arm` on `server` (None or the framework's
        configured server: its own upstream).

        Raises:
            UpstreamUnavailable: no client for that server (its settings block lists no
                replica address).
        """
        if server is None or server == self.servers[arm]:
            return _Lane(self.upstreams[arm], self.breakers[arm], self.timeouts[arm])
        lane = self.lanes.get((arm, server))
        if lane is None:
            raise UpstreamUnavailable(
                f"{arm} on {server}",
                f"the gateway has no {server} client (settings.{server} lists no replica address)",
            )
        return lane

    def _breaker(self, arm: Framework, server: ServerKind | None) -> CircuitBreaker:
        lane = self.lanes.get((arm, server)) if server is not None else None
        return lane.breaker if lane is not None else self.breakers[arm]

    async def _attempt(
        self, lane: _Lane, arm: Framework, request: InferRequest, timeout: float
    ) -> InferResponse:
        try:
            return await lane.upstream.infer(request, timeout)
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
        server: ServerKind | None = None,
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
                breaker=int(self._breaker(arm, server).state),
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


def _on_server(
    info: ModelInfo, decision: Decision, arms: tuple[Framework, ...], version: int | None
) -> tuple[Framework, ...]:
    """The frameworks that may answer when the arm names its own server: its framework
    only if that server serves the version (`ModelInfo.serves_on`), so an arm is routed
    only where its server has the build (else as when its framework lacks it)."""
    primary, server = decision.primary, decision.server
    if server is None or info.serves_on(primary, server, version or info.latest):
        return arms
    return tuple(fw for fw in arms if fw != primary)


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
