"""The router: pick the arm by the model's policy, call it, fail over, mirror, record.

It knows nothing about wire formats (requests arrive as `InferRequest`) and nothing
about transports (upstreams hide them).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import replace

from gateway.catalog import Catalog, ModelInfo, validate
from gateway.deadline import budget
from gateway.errors import (
    DeadlineExceeded,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.experiments.shadow import ShadowMirror
from gateway.experiments.stats import ExperimentStats
from gateway.metrics import GatewayMetrics
from gateway.routing.breaker import CircuitBreaker
from gateway.routing.policy import Decision, decide, routing_key
from gateway.settings import GatewaySettings, ModelPolicy
from gateway.types import FRAMEWORKS, Framework, InferRequest, InferResponse, other
from gateway.upstreams.base import Upstream


class Router:
    """Routes every prediction; its policies can be changed at run time (admin API)."""

    def __init__(
        self,
        catalog: Catalog,
        upstreams: Mapping[Framework, Upstream],
        settings: GatewaySettings,
        stats: ExperimentStats,
        metrics: GatewayMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.upstreams = upstreams
        self.stats = stats
        self.metrics = metrics
        self.policies: dict[str, ModelPolicy] = {m: settings.policy(m) for m in catalog.names}
        self.breakers = {fw: CircuitBreaker(settings.breaker) for fw in FRAMEWORKS}
        self.timeouts = {
            "tensorflow": settings.tensorflow.timeout_s,
            "pytorch": settings.pytorch.timeout_s,
        }
        self.min_breaker_timeout = settings.breaker.min_timeout_s
        self._rng = rng or random.Random()
        self.shadow = ShadowMirror(
            self.call_arm, stats, settings.shadow_queue_size, on_result=metrics.observe_shadow
        )

    def set_policy(self, model: str, policy: ModelPolicy) -> None:
        self.catalog.get(model)  # NotFound for unknown models
        self.policies[model] = policy

    def prepare(self, request: InferRequest, strict_dtype: bool) -> ModelInfo:
        """Resolve the version and validate the tensors; nothing has left the gateway yet."""
        info = self.catalog.get(request.model)
        request.version = info.resolve_version(request.version, request.version_label)
        request.version_label = None
        validate(request, info, strict_dtype)
        return info

    async def infer(self, request: InferRequest, strict_dtype: bool = False) -> InferResponse:
        """Answer `request` from the arm its model's policy picks (see `Decision`)."""
        unversioned = request.version is None and request.version_label is None
        info = self.prepare(request, strict_dtype)
        policy = self.policies[request.model]
        request.routing_key = routing_key(request, policy)
        decision = decide(policy, request, self._rng)
        if policy.arm_versions and unversioned:  # an experiment names each arm's version
            request.version = policy.arm_versions.get(decision.primary, request.version)
        arms = info.versions[request.version or info.latest]
        response = await self._answer(request, decision, arms)
        if (
            decision.shadow is not None
            and decision.shadow in arms
            and decision.shadow != response.backend
        ):
            # The mirror answers nobody: the client's deadline does not bound it.
            self.shadow.submit(decision.shadow, replace(request, deadline=None), response)
        return response.select(request.outputs)

    async def _answer(
        self, request: InferRequest, decision: Decision, arms: tuple[Framework, ...]
    ) -> InferResponse:
        primary = decision.primary
        if primary not in arms:
            if request.pinned is not None:
                raise NotFound(f"{request.model} version {request.version} has no {primary} build")
            primary = other(primary)
        fallback = decision.fallback
        # A client that pinned a framework asked for that framework: no failover.
        if fallback not in arms or request.pinned is not None:
            fallback = None
        try:
            # With a fallback, the first attempt may spend half of the client's time.
            return await self.call_arm(primary, request, 0.5 if fallback else 1.0)
        except (UpstreamRejected, NotFound):
            raise
        except UpstreamError:
            if fallback is None:
                raise
        self.metrics.failovers.labels(request.model, primary).inc()
        response = await self.call_arm(fallback, request)
        response.failover = True
        self.stats.arm(request.model, fallback).failovers_in += 1
        return response

    async def call_arm(
        self, arm: Framework, request: InferRequest, share: float = 1.0
    ) -> InferResponse:
        """One upstream call through the arm's breaker, recorded in the arm's statistics.

        Args:
            share: the part of the time left before the client's deadline this attempt
                may spend (the rest is kept for a failover).

        Raises:
            DeadlineExceeded: no time was left, or the attempt had less than
                `breaker.min_timeout_s` and ran out (the client's doing: not counted).
            UpstreamError: the backend failed (counted by the arm's breaker).
        """
        breaker = self.breakers[arm]
        timeout = budget(self.timeouts[arm], request.deadline, share=share)
        if not breaker.allow():
            self.stats.record_error(request.model, arm, "BreakerOpen")
            raise UpstreamUnavailable(arm, "circuit breaker is open after repeated failures")
        started = time.perf_counter()
        try:
            response = await self.upstreams[arm].infer(request, timeout)
        except UpstreamTimeout as exc:
            if timeout < self.min_breaker_timeout:  # too short to blame the backend
                breaker.record_success()
                raise DeadlineExceeded(f"{arm}: the request's deadline passed") from exc
            breaker.record_failure()
            self.stats.record_error(request.model, arm, type(exc).__name__)
            raise
        except (UpstreamRejected, NotFound) as exc:
            breaker.record_success()  # the backend is healthy; the request was not
            self.stats.record_error(request.model, arm, type(exc).__name__)
            raise
        except UpstreamError as exc:
            breaker.record_failure()
            self.stats.record_error(request.model, arm, type(exc).__name__)
            raise
        finally:
            self.metrics.breaker.labels(arm).set(int(breaker.state))
        breaker.record_success()
        elapsed = time.perf_counter() - started
        self.stats.record_success(request.model, arm, elapsed)
        self.metrics.upstream_latency.labels(request.model, arm).observe(
            response.timings.get("upstream", elapsed)
        )
        return response

    async def ready(self, model: str) -> dict[Framework, bool]:
        """Readiness per arm for `model` (an open breaker counts as not ready)."""
        return {
            arm: self.breakers[arm].state != 2 and await self._upstream_ready(arm, model)
            for arm in FRAMEWORKS
        }

    async def _upstream_ready(self, arm: Framework, model: str) -> bool:
        try:
            return await self.upstreams[arm].ready(model)
        except Exception:  # readiness probes must answer, whatever the backend does
            return False
