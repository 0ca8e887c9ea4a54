"""The one internal request/response pair every protocol decodes into and encodes from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Framework = Literal["tensorflow", "pytorch"]
FRAMEWORKS: tuple[Framework, Framework] = ("tensorflow", "pytorch")
ServerKind = Literal["tfserving", "torchserve", "oip"]
"""The server an arm's upstream speaks to: its API, not its framework (`servers`)."""


def other(framework: Framework) -> Framework:
    """The other arm."""
    return "pytorch" if framework == "tensorflow" else "tensorflow"


def new_request_id() -> str:
    """32 random hex digits, as `uuid4().hex` writes them, at a fifth of its cost
    (measured: 3.0 -> 0.6 us; no UUID object)."""
    return os.urandom(16).hex()


class TraceContext:
    """The W3C trace context one request carries (made only by `gateway.telemetry.tracing`).

    Attributes:
        traceparent: `00-<trace-id>-<parent-id>-<flags>` (W3C Trace Context, section 3.2):
            what the gateway's next hop is told; with tracing off the incoming one as it
            came (or a new one), with tracing on the parent is the gateway's span.
        tracestate: the vendors' list as it came, bounded (section 3.3), or None.
        outgoing: the (name, value) pairs written on every upstream call (lower-case
            names: HTTP headers and gRPC metadata alike).
        span: the gateway's span the next spans hang under (tracing on), else None.
        call: what the router's call is (`primary`, `failover`, `shadow`): an attribute
            of the upstream attempts' spans.
        remote: the client sent `traceparent` (False: the gateway started the trace).
    """

    __slots__ = ("call", "outgoing", "remote", "span", "traceparent", "tracestate")

    def __init__(
        self,
        traceparent: str,
        tracestate: str | None = None,
        span: Any = None,
        call: str = "",
        remote: bool = True,
    ) -> None:
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.outgoing: tuple[tuple[str, str], ...] = (
            (("traceparent", traceparent),)
            if tracestate is None
            else (("traceparent", traceparent), ("tracestate", tracestate))
        )
        self.span = span
        self.call = call
        self.remote = remote


@dataclass
class InferRequest:
    """A prediction request, independent of wire format and framework.

    Attributes:
        model: model name, e.g. ``digits-mlp``.
        inputs: named numpy tensors (batch first).
        version: a specific version, or None for the one the router picks.
        version_label: a TF Serving version label, resolved by the router.
        outputs: requested output names; empty means all.
        request_id: the client's ``X-Request-Id`` or one the gateway assigned.
        routing_key: the sticky key (``X-Routing-Key`` or a configured field), if any.
        pinned: a framework the client asked for (``X-Backend``), if any.
        pinned_arm: an arm the client asked for by name (``X-Arm``), if any.
        parameters: protocol parameters passed through (e.g. ``signature_name``).
        deadline: the client's deadline, an absolute ``time.monotonic()`` instant
            (see `gateway.edge.deadline`), or None when the client gave none.
        trace: the W3C trace context to forward upstream (`gateway.telemetry.tracing`);
            None: nothing is forwarded (a request no ingress made).
    """

    model: str
    inputs: dict[str, np.ndarray]
    version: int | None = None
    version_label: str | None = None
    outputs: list[str] = field(default_factory=list)
    request_id: str = field(default_factory=new_request_id)
    routing_key: str | None = None
    pinned: Framework | None = None
    pinned_arm: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    deadline: float | None = None
    trace: TraceContext | None = None

    @property
    def batch_size(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return 0 if first is None or first.ndim == 0 else int(first.shape[0])


@dataclass
class InferResponse:
    """A prediction answer: which framework and version produced which tensors.

    Attributes:
        failover: True when the chosen arm failed and the other one answered.
        timings: seconds spent, e.g. ``upstream`` and ``total``.
    """

    model: str
    version: int
    backend: Framework
    outputs: dict[str, np.ndarray]
    request_id: str = ""
    failover: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def select(self, names: list[str]) -> InferResponse:
        """Only the requested outputs (all when `names` is empty)."""
        if not names:
            return self
        self.outputs = {name: self.outputs[name] for name in names}
        return self
