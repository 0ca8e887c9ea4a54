"""The one upstream client: replica choice, timing and response assembly for every backend.

A backend kind brings a `Codec` (how an `InferRequest` becomes a call on its wire, how
the answer becomes named arrays, how readiness is asked) and a transport brings a `Wire`
(pooled connections to every replica and the one error boundary of a call: REST in
`rest_session.py`, gRPC in `grpc_channels.py`). `PooledUpstream` does the rest the same
way for all four: the deadline, `ReplicaPool`'s choice and retries, the upstream timing
that `Server-Timing` reports, output selection and the `InferResponse`.

The router resolves every request's version (and label) before it reaches a client
(`Router.prepare`), so clients send the version asked for and report the backend's own
when it says (TF Serving's gRPC reply does), else that one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from gateway.core.errors import GatewayError
from gateway.core.types import Framework, InferRequest, InferResponse, TraceContext
from gateway.settings import UpstreamSettings
from gateway.telemetry import tracing
from gateway.upstreams.failures import Target
from gateway.upstreams.kinds.bodies import select_outputs
from gateway.upstreams.replicas import ReplicaPool

R = TypeVar("R")  # one replica's handle: a base URL, a gRPC channel
C = TypeVar("C")  # a call on the wire: a REST request, a gRPC method and message
A = TypeVar("A")  # the wire's answer: a body, a reply message
C_co = TypeVar("C_co", covariant=True)
C_contra = TypeVar("C_contra", contravariant=True)
A_co = TypeVar("A_co", covariant=True)
A_contra = TypeVar("A_contra", contravariant=True)
Carrier = tuple[tuple[str, str], ...]
"""W3C trace context for the wire: ("traceparent", v) and maybe ("tracestate", v)."""


@dataclass(frozen=True)
class Decoded:
    """A backend's answer: its named arrays, and the version it says ran (None = silent)."""

    outputs: dict[str, np.ndarray]
    version: int | None = None


class Codec(Protocol[C_co, A_contra]):
    """What a backend kind supplies: its request encoding and its answer decoding."""

    framework: Framework

    def encode(self, request: InferRequest) -> C_co:
        """The call that runs `request` (model, version, tensors, output filter)."""
        ...

    def decode(self, answer: A_contra, request: InferRequest, target: Target) -> Decoded:
        """The named arrays of the answer to `request`; `UpstreamError` when it cannot be
        read."""
        ...

    def probe(self, model: str) -> C_co:
        """The call that asks one replica whether it serves `model`."""
        ...

    def is_ready(self, answer: A_contra) -> bool:
        """Whether the probe's answer says the model (or server) is ready."""
        ...


class Wire(Protocol[R, C_contra, A_co]):
    """What a transport supplies: per-replica handles and the call's error boundary."""

    def open(self) -> list[R]:
        """One handle per configured replica, made inside the running event loop."""
        ...

    async def send(
        self, replica: R, call: C_contra, timeout: float, target: Target, trace: Carrier = ()
    ) -> A_co:
        """The answer of `call` on `replica`, carrying `trace` (W3C `traceparent` and
        `tracestate`, as headers or metadata); failures raise `gateway.core.errors` errors."""
        ...

    def describe(self, replica: R, call: C_contra) -> tuple[str, dict[str, Any]]:
        """A client span's name and attributes for `call` on `replica` (tracing on; the
        OpenTelemetry semantic conventions of the transport)."""
        ...

    async def aclose(self, replicas: list[R]) -> None:
        """Close what `open` made."""
        ...


class PooledUpstream(Generic[R, C, A]):
    """A backend's client (the `Upstream` protocol) over all its replicas.

    Args:
        settings: the backend's `timeout_s` (caps every caller's deadline) and
            `unhealthy_for_s` (how long a replica that refused a connection is skipped).
        codec: the backend kind's encoding and decoding.
        wire: the transport the settings chose, with its pooled connections.
        min_verdict_s: an attempt given less than this is no verdict on its replica
            (`ReplicaPool`; the gateway passes `breaker.min_timeout_s`).
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        codec: Codec[C, A],
        wire: Wire[R, C, A],
        min_verdict_s: float = 0.0,
    ):
        self.settings = settings
        self.min_verdict_s = min_verdict_s
        self.codec = codec
        self.wire = wire
        self.framework: Framework = codec.framework
        self._pool: ReplicaPool[R] | None = None

    def pool(self) -> ReplicaPool[R]:
        """The replicas, opened on first use (in the event loop they belong to)."""
        if self._pool is None:
            replicas = self.wire.open()
            self._pool = ReplicaPool(
                self.framework,
                replicas,
                self.settings.unhealthy_for_s,
                min_verdict_s=self.min_verdict_s,
            )
        return self._pool

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        """Run `request` on one healthy replica; `timings["upstream"]` is the wire call's
        seconds (request bytes out to answer bytes in, retries included).

        Raises:
            UpstreamError: any subclass, from the wire, the pool or the codec.
        """
        target = Target(self.framework, request.model, request.version)
        call, send, trace = self.codec.encode(request), self.wire.send, request.trace
        carrier = () if trace is None else trace.outgoing

        def plain(replica: R, left: float) -> Awaitable[A]:  # no coroutine of its own
            return send(replica, call, left, target, carrier)

        attempt: Callable[[R, float], Awaitable[A]] = plain
        if trace is not None and trace.span is not None:  # tracing on: a span per attempt
            attempt = self._traced(call, target, trace)
        started = time.perf_counter()
        answer = await self.pool().call(attempt, min(timeout, self.settings.timeout_s))
        elapsed = time.perf_counter() - started
        decoded = self.codec.decode(answer, request, target)
        return InferResponse(
            model=request.model,
            version=decoded.version or request.version or 0,
            backend=self.framework,
            outputs=select_outputs(decoded.outputs, request.outputs, target),
            request_id=request.request_id,
            timings={"upstream": elapsed},
        )

    def _traced(
        self, call: C, target: Target, trace: TraceContext
    ) -> Callable[[R, float], Awaitable[A]]:
        """`attempt` with a client span around each replica's call, whose context is the
        one the backend receives."""
        common = {
            "dualserve.arm": self.framework,
            "dualserve.framework": self.framework,
            "dualserve.model": target.model,
            "dualserve.version": target.version or 0,
            "dualserve.call": trace.call or "primary",
        }

        async def attempt(replica: R, left: float) -> A:
            name, attributes = self.wire.describe(replica, call)
            span, carrier = tracing.start_client(trace, name, {**attributes, **common})
            try:
                answer = await self.wire.send(replica, call, left, target, carrier)
            except BaseException as exc:
                tracing.end(span, exc, _failed_status(exc))
                raise
            tracing.end(span, None, _ok_status(attributes))
            return answer

        return attempt

    async def ready(self, model: str) -> bool:
        """True when some replica's answer to the codec's probe says ready."""
        target = Target(self.framework, model)
        call = self.codec.probe(model)
        for replica in self.pool().replicas:
            try:
                answer = await self.wire.send(replica, call, self.settings.timeout_s, target)
            except GatewayError:  # any failure means "not ready on this replica"
                continue
            if self.codec.is_ready(answer):
                return True
        return False

    async def aclose(self) -> None:
        if self._pool is not None:
            await self.wire.aclose(self._pool.replicas)
            self._pool = None


def _ok_status(attributes: dict[str, Any]) -> dict[str, int]:
    """An answered attempt's status: gRPC OK, or HTTP 200 (what both backends answer a
    prediction with; the REST wire passes any 2xx)."""
    if attributes.get("rpc.system") == "grpc":
        return {"rpc.grpc.status_code": 0}
    return {"http.response.status_code": 200}


def _failed_status(exc: BaseException) -> dict[str, int]:
    """The gateway's reading of a failed attempt (`gateway.core.errors`: its HTTP status)."""
    status = getattr(exc, "status", None)
    return {} if status is None else {"dualserve.status": int(status)}
