"""What every gRPC ingress shares: call metadata, trailing metadata, the error boundary.

Servicer methods are plain coroutines `(message, Call) -> reply`; `unary` wraps each one
into a gRPC method handler with the one error boundary, on the gateway's `Edge`
(`gateway.edge.boundary`, shared with REST): prediction methods are admitted by it, a
`GatewayError` aborts the call with its own gRPC code and message (and is counted, for
prediction methods, exactly like a REST error), anything else is logged and becomes
INTERNAL without a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.context import GatewayContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.types import Framework, InferResponse, TraceContext, new_request_id
from gateway.edge.deadline import from_time_remaining
from gateway.edge.limits import check_request_id
from gateway.edge.security_settings import LimitsSettings
from gateway.routing.policy import parse_arm_pin, parse_pin
from gateway.telemetry import tracing
from gateway.telemetry.server_timing import METADATA_KEY as KEY_SERVER_TIMING
from gateway.telemetry.server_timing import server_timing

# gRPC metadata keys are lower case; the same names as the REST headers.
KEY_BACKEND = "x-backend"
KEY_ARM = "x-arm"
KEY_VERSION = "x-model-version"
KEY_REQUEST_ID = "x-request-id"
KEY_ROUTING_KEY = "x-routing-key"
KEY_FAILOVER = "x-failover"
KEY_TRACEPARENT = "traceparent"
KEY_TRACESTATE = "tracestate"
# gRPC codes a server span counts as an error (OpenTelemetry's gRPC semantic conventions).
_SERVER_ERRORS = frozenset(
    grpc.StatusCode[name]
    for name in ("UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE")
)


@dataclass
class Call:
    """One incoming call: its metadata (text keys only), its request id and, for
    predictions, its W3C trace context (`gateway.telemetry.tracing`)."""

    context: grpc.aio.ServicerContext
    headers: dict[str, str]
    request_id: str
    trace: TraceContext | None = None

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext) -> Call:
        headers = {
            key.lower(): value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)  # `-bin` keys carry bytes; none of ours does
        }
        return cls(context, headers, headers.get(KEY_REQUEST_ID) or new_request_id())

    def read_trace(self) -> TraceContext:
        """The call's trace context, read from its `traceparent`/`tracestate` metadata (the
        gRPC ingress's one reader of it)."""
        get = self.headers.get
        self.trace = tracing.incoming(get(KEY_TRACEPARENT), get(KEY_TRACESTATE))
        return self.trace

    def check_request_id(self, limits: LimitsSettings) -> None:
        """BadRequest when the request id (metadata or an OIP body `id`) is too long."""
        check_request_id(self.request_id, limits, "the request id")

    @property
    def deadline(self) -> float | None:
        """The call's deadline as an absolute monotonic instant (None: the client set none)."""
        return from_time_remaining(self.context.time_remaining())

    @property
    def routing_key(self) -> str | None:
        return self.headers.get(KEY_ROUTING_KEY)

    def pinned(self) -> Framework | None:
        """The framework pinned by `x-backend`, if any (a BadRequest names the choices)."""
        return parse_pin(self.headers.get(KEY_BACKEND), f"metadata {KEY_BACKEND}")

    def pinned_arm(self) -> str | None:
        """The arm named by `x-arm`, if any (the router checks it against the arms)."""
        return parse_arm_pin(self.headers.get(KEY_ARM))

    def answered(self, answer: InferResponse) -> None:
        """Trailing metadata naming who answered: framework, version, request id, failover,
        and the request's `traceparent`."""
        trailing = [
            (KEY_BACKEND, answer.backend),
            (KEY_VERSION, str(answer.version)),
            (KEY_REQUEST_ID, self.request_id),
            (KEY_SERVER_TIMING, server_timing(answer.timings)),
        ]
        if answer.failover:
            trailing.append((KEY_FAILOVER, "true"))
        if self.trace is not None:
            trailing.append((KEY_TRACEPARENT, self.trace.traceparent))
        self.context.set_trailing_metadata(tuple(trailing))


Method = Callable[[Any, Call], Awaitable[Any]]


@dataclass(frozen=True)
class Boundary:
    """The error boundary of one ingress protocol, on the gateway's one `Edge`.

    Args:
        ctx: the gateway's shared objects (its edge admits, shapes and counts).
        protocol: the metrics label, e.g. `tfserving-grpc`.
    """

    ctx: GatewayContext
    protocol: str

    def unary(
        self,
        method: Method,
        request_type: Any,
        response_type: Any,
        model_of: Callable[[Any], str] | None = None,
        rpc: str = "",
    ) -> grpc.RpcMethodHandler:
        """A unary handler for `method`; `model_of` marks a prediction method: admitted by
        the edge (RESOURCE_EXHAUSTED before any decoding), its errors counted under the
        model the request names, its trace context read (`Call.read_trace`) and, with
        tracing on, a server span named `rpc` (`service/Method`) around it."""

        edge = self.ctx.edge
        admitted = edge.admitted if model_of is not None else None
        protocol = self.protocol if model_of is not None else None
        where = f"in {self.protocol}"

        def error(exc: Exception, message: Any) -> GatewayError:
            model = (
                None if model_of is None or isinstance(message, Malformed) else model_of(message)
            )
            return edge.error(exc, protocol, model, where)

        async def behaviour(
            message: Any, context: grpc.aio.ServicerContext, call: Call | None = None
        ) -> Any:
            if call is None:
                call = Call.of(context)
                if admitted is not None:
                    call.read_trace()
            try:
                if isinstance(message, Malformed):
                    raise BadRequest(f"malformed {request_type.DESCRIPTOR.name}: {message.reason}")
                if admitted is None:
                    return await method(message, call)
                return await admitted(method, message, call)
            except GatewayError as exc:
                await abort(call, error(exc, message))
            except Exception as exc:  # a bug: INTERNAL, without detail or request id
                shaped = error(exc, message)
                await context.abort(shaped.grpc_code, shaped.message)

        # Chosen once: with tracing off (`configure` runs before the ingress starts) a
        # prediction pays nothing for spans.
        spanned = tracing.TRACER is not None and admitted is not None
        return grpc.unary_unary_rpc_method_handler(
            _traced(behaviour, rpc, self.protocol) if spanned else behaviour,
            request_deserializer=lenient(request_type),
            response_serializer=response_type.SerializeToString,
        )


def _traced(
    behaviour: Callable[[Any, grpc.aio.ServicerContext, Call], Awaitable[Any]],
    rpc: str,
    protocol: str,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    """`behaviour` inside the call's server span (tracing on)."""

    async def traced(message: Any, context: grpc.aio.ServicerContext) -> Any:
        call = Call.of(context)
        trace = call.read_trace()
        tracing.start_server(trace, rpc, _server_attributes(rpc, protocol, call))
        code, failure = grpc.StatusCode.OK, None
        try:
            return await behaviour(message, context, call)
        except BaseException as exc:  # the abort, or a cancelled call
            code = context.code() or grpc.StatusCode.UNKNOWN
            if not isinstance(code, grpc.StatusCode):
                code = grpc.StatusCode.CANCELLED
            failure = exc if code in _SERVER_ERRORS else None
            raise
        finally:
            tracing.end(trace.span, failure, {"rpc.grpc.status_code": code.value[0]})

    return traced


def _server_attributes(rpc: str, protocol: str, call: Call) -> dict[str, Any]:
    """A gRPC server span's attributes (OpenTelemetry's RPC semantic conventions)."""
    service, _, method = rpc.rpartition("/")
    return {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": method,
        "dualserve.protocol": protocol,
        "client.address": call.context.peer(),
    }


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message of the method's type."""

    reason: str


def lenient(request_type: Any) -> Callable[[bytes], Any]:
    """`request_type.FromString`, but bytes that do not parse become a `Malformed` for the
    error boundary to answer with INVALID_ARGUMENT (gRPC itself would say INTERNAL)."""

    def parse(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except DecodeError as exc:
            return Malformed(str(exc) or "the message does not parse")

    return parse


async def abort(call: Call, exc: GatewayError) -> None:
    """End the call with the error's gRPC code and sentence; the request id (and the
    trace context) trail."""
    trailing = ((KEY_REQUEST_ID, call.request_id), *exc.trailing_metadata)
    if call.trace is not None:
        trailing += ((KEY_TRACEPARENT, call.trace.traceparent),)
    await call.context.abort(exc.grpc_code, exc.message, trailing_metadata=trailing)


def unary_methods(
    boundary: Boundary, messages: ModuleType, methods: Mapping[str, Method]
) -> dict[str, grpc.RpcMethodHandler]:
    """Unary, non-prediction handlers by RPC name; each RPC `X`'s messages are
    `messages.XRequest` and `messages.XResponse` (protobuf's naming, e.g. `ServerLive`)."""
    return {
        rpc: boundary.unary(
            method, getattr(messages, f"{rpc}Request"), getattr(messages, f"{rpc}Response")
        )
        for rpc, method in methods.items()
    }
