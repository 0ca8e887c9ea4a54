"""W3C trace context on every request, and OpenTelemetry spans when tracing is on.

**Propagation, always.** Each ingress reads the incoming `traceparent`/`tracestate` once
(REST: `GatewayApp._prediction` in `protocols/rest/front_door.py`; gRPC: the prediction
boundary in `protocols/grpc/common.py`) with `incoming`, which puts a `TraceContext` on the
request; each transport writes `TraceContext.outgoing` on every upstream call, retries,
failovers and shadow calls included (`RestWire.send`, `GrpcWire.send`), and the answer
carries the request's `traceparent` (REST header, gRPC trailing metadata).

- A valid `traceparent` is forwarded as it came when tracing is off: the trace id and the
  parent id are kept (W3C Trace Context Level 1, section 3.5 "Mutating the traceparent
  Field": a vendor MUST forward traceparent and MAY leave it unchanged, as pass-through
  proxies and services that do not trace do; unchanged, tracestate is left unchanged too).
  A version above `00` is sent on as `00` (section 3.2.4: the first four fields are parsed
  as version 00's).
- None, or a malformed one (section 3.2.2: wrong length, non-hex or upper-case digits,
  version `ff`, an all-zero trace or parent id): a new trace starts, random ids, flags
  `00` (not sampled: nothing is recorded while tracing is off); its tracestate is dropped
  (section 3.3: tracestate is not read without a valid traceparent). Never an error.
- `tracestate` is passed through, bounded: at most `MAX_TRACESTATE_MEMBERS` (32) members and
  `MAX_TRACESTATE_CHARS` (512) characters (section 3.3.1.5 "Tracestate Limits": vendors
  SHOULD propagate at least 512 characters; past that, members longer than 128 characters
  are removed first, then members from the end). A value with a character outside
  printable ASCII is dropped (section 3.3.1.3). Of repeated headers the first is read.

**Spans, when tracing is on** (`configure`: the OpenTelemetry SDK's environment or the
YAML's `tracing:` section): the ingress's server span (its parent the incoming context),
the router's `route` span (policy layer, arm, version, failover) and one client span per
upstream attempt (replica retries and the failover each their own), whose context is what
the backend receives. Off, the fast path pays one `TRACER is None` or `span is None` test
per step: no span object, no context attached, the SDK not even imported.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from gateway.core.types import TraceContext

TRACER: Any = None
"""The tracer while tracing is on; None while off (the one test on the fast path)."""
_PROVIDER: Any = None

SERVICE_NAME = "dualserve-gateway"
MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
LONG_MEMBER_CHARS = 128
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_VERSION_00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}").fullmatch
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16
_TRUE = {"true", "1", "yes", "on"}


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a `traceparent` value, or None when it is malformed
    (W3C Trace Context Level 1, sections 3.2.2-3.2.4)."""
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    return trace_id, parent_id, flags


def bounded_tracestate(value: str) -> str | None:
    """`value` within the section 3.3.1.5 limits (see the module's docstring); None when
    nothing is left or a character is not printable ASCII."""
    if not (value.isascii() and value.isprintable()):
        return None
    if len(value) <= MAX_TRACESTATE_CHARS and value.count(",") < MAX_TRACESTATE_MEMBERS:
        return value.strip() or None  # the common case: as it came
    members = [m.strip() for m in value.split(",")]
    members = [m for m in members if m][:MAX_TRACESTATE_MEMBERS]
    while members and len(",".join(members)) > MAX_TRACESTATE_CHARS:
        long = next((i for i, m in enumerate(members) if len(m) > LONG_MEMBER_CHARS), None)
        members.pop(len(members) - 1 if long is None else long)
    return ",".join(members) or None


def new_traceparent() -> str:
    """A new trace: random trace and parent ids, not sampled."""
    ids = os.urandom(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-00"


def incoming(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The trace context of a request that arrived with these header values (None: absent);
    never raises."""
    if (
        traceparent is not None
        and _VERSION_00(traceparent) is not None  # the common case, at a third of the cost
        and traceparent[3:35] != _ZERO_TRACE
        and traceparent[36:52] != _ZERO_PARENT
    ):
        return TraceContext(traceparent, bounded_tracestate(tracestate) if tracestate else None)
    return _incoming_otherwise(traceparent, tracestate)


def _incoming_otherwise(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """`incoming` for none, a malformed one, blanks around it or a later version."""
    parsed = parse_traceparent(traceparent) if traceparent else None
    if parsed is None or traceparent is None:
        return TraceContext(new_traceparent(), remote=False)
    state = bounded_tracestate(tracestate) if tracestate else None
    trace_id, parent_id, flags = parsed
    forwarded = traceparent if traceparent[:3] == "00-" and len(traceparent) == 55 else None
    return TraceContext(forwarded or f"00-{trace_id}-{parent_id}-{flags}", state)


# --- spans (tracing on) ------------------------------------------------------------------


def start_server(trace: TraceContext, name: str, attributes: Mapping[str, Any]) -> None:
    """The ingress's server span on `trace` (tracing on): its parent is the client's context
    (none for a trace the gateway started); `trace.traceparent` then names this span.

    A span the sampler did not sample gets no children: `trace.span` stays None, so the
    route and the attempts make no span, and the backends get this span's context (flags
    `00`). The SDK's samplers decide a child as its parent does (parent-based) or by the
    trace id (`traceidratio`), so no child of it would have been recorded anyway."""
    from opentelemetry import trace as api

    parent = _remote_context(trace) if trace.remote else None
    span = TRACER.start_span(name, parent, api.SpanKind.SERVER, attributes)
    _adopt(trace, span)
    if not span.is_recording():
        trace.span = None


def start_internal(trace: TraceContext, name: str, attributes: Mapping[str, Any]) -> Any:
    """A span under `trace.span` (tracing on)."""
    from opentelemetry import trace as api

    context = api.set_span_in_context(trace.span)
    return TRACER.start_span(name, context, api.SpanKind.INTERNAL, attributes)


def start_client(
    trace: TraceContext, name: str, attributes: Mapping[str, Any]
) -> tuple[Any, tuple[tuple[str, str], ...]]:
    """One upstream attempt's client span under `trace.span`, and the headers (metadata)
    that carry its context to the backend."""
    from opentelemetry import trace as api

    context = api.set_span_in_context(trace.span)
    span = TRACER.start_span(name, context, api.SpanKind.CLIENT, attributes)
    return span, TraceContext(_traceparent_of(span), trace.tracestate).outgoing


def child(trace: TraceContext, span: Any, call: str = "") -> TraceContext:
    """`trace` with `span` as the parent of what follows (the same tracestate)."""
    return TraceContext(trace.traceparent, trace.tracestate, span, call)


def for_shadow(trace: TraceContext | None) -> TraceContext | None:
    """The trace of a mirrored call: the same one, its spans marked `shadow` when on."""
    if trace is None or trace.span is None:
        return trace
    return child(trace, trace.span, "shadow")


def end(
    span: Any, error: BaseException | str | None = None, attributes: Mapping[str, Any] = {}
) -> None:
    """End `span` with `attributes`; an error (an exception, or the `error.type` text of a
    failed status, e.g. "503") marks it failed (`fail`). None: nothing to end (a span the
    sampler left out, see `start_server`)."""
    if span is None:
        return
    if attributes:
        span.set_attributes(attributes)
    if error is not None:
        fail(span, error)
    span.end()


def fail(span: Any, error: BaseException | str) -> None:
    """Mark `span` failed: status ERROR and `error.type` (an exception's class name)."""
    from opentelemetry.trace import Status, StatusCode

    if isinstance(error, str):
        kind, description = error, error
    else:
        kind, description = type(error).__name__, str(getattr(error, "message", error))
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, description[:256]))


def _remote_context(trace: TraceContext) -> Any:
    from opentelemetry import trace as api
    from opentelemetry.trace.span import TraceState

    value = trace.traceparent
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
    remote = api.SpanContext(
        int(trace_id, 16), int(parent_id, 16), True, api.TraceFlags(int(flags, 16)), state
    )
    return api.set_span_in_context(api.NonRecordingSpan(remote))


def _traceparent_of(span: Any) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _adopt(trace: TraceContext, span: Any) -> None:
    adopted = TraceContext(_traceparent_of(span), trace.tracestate, span)
    trace.traceparent, trace.outgoing, trace.span = adopted.traceparent, adopted.outgoing, span


# --- configuration -------------------------------------------------------------------------


def wanted(settings: Any, environ: Mapping[str, str]) -> bool:
    """Whether tracing is on for `settings` (a `TracingSettings`) and the environment."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if settings.enabled is not None:
        return bool(settings.enabled)
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        settings.endpoint
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure(settings: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on or off in this process (the composition root calls it once per app);
    True when on. The SDK is imported only when on.

    Raises:
        ValueError: an OTLP protocol other than `http/protobuf` or `grpc`.
    """
    global TRACER, _PROVIDER
    environ = os.environ if environ is None else environ
    shutdown()
    if not wanted(settings, environ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create(_resource(settings, environ)))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings, environ)))
    _PROVIDER, TRACER = provider, provider.get_tracer("dualserve.gateway")
    return True


def shutdown() -> None:
    """Export what is left and turn tracing off (the app's lifespan ends)."""
    global TRACER, _PROVIDER
    provider, _PROVIDER, TRACER = _PROVIDER, None, None
    if provider is not None:
        provider.shutdown()


def _resource(settings: Any, environ: Mapping[str, str]) -> dict[str, str]:
    if settings.service_name:
        return {"service.name": settings.service_name}
    if environ.get("OTEL_SERVICE_NAME") or "service.name=" in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        return {}  # the SDK reads them
    return {"service.name": SERVICE_NAME}


def _exporter(settings: Any, environ: Mapping[str, str]) -> Any:
    protocol = (
        settings.protocol
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    endpoint = settings.endpoint
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint)
    if protocol != "http/protobuf":
        raise ValueError(
            f"OTLP protocol {protocol!r} (OTEL_EXPORTER_OTLP_PROTOCOL): use http/protobuf or grpc"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    url = None if endpoint is None else endpoint.rstrip("/") + "/v1/traces"
    return HttpSpanExporter(endpoint=url)
