"""What every gRPC ingress shares: call metadata, trailing metadata, the error boundary.

Servicer methods are plain coroutines `(message, Call) -> reply`; `unary` wraps each one
into a gRPC method handler with the one error boundary, on the gateway's `Edge`
(`gateway.edge.boundary`, shared with REST): prediction methods are admitted by it, a
`GatewayError` aborts the call with its own gRPC code and message (and is counted, for
prediction methods, exactly like a REST error), anything else is logged and becomes
INTERNAL without a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.context import GatewayContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.types import Framework, InferResponse, new_request_id
from gateway.edge.deadline import from_time_remaining
from gateway.edge.limits import check_request_id
from gateway.edge.security_settings import LimitsSettings
from gateway.routing.policy import parse_arm_pin, parse_pin
from gateway.telemetry.server_timing import METADATA_KEY as KEY_SERVER_TIMING
from gateway.telemetry.server_timing import server_timing

# gRPC metadata keys are lower case; the same names as the REST headers.
KEY_BACKEND = "x-backend"
KEY_ARM = "x-arm"
KEY_VERSION = "x-model-version"
KEY_REQUEST_ID = "x-request-id"
KEY_ROUTING_KEY = "x-routing-key"
KEY_FAILOVER = "x-failover"


@dataclass
class Call:
    """One incoming call: its metadata (text keys only) and its request id."""

    context: grpc.aio.ServicerContext
    headers: dict[str, str]
    request_id: str

    @classmethod
    def of(cls, context: grpc.aio.ServicerContext) -> Call:
        headers = {
            key.lower(): value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)  # `-bin` keys carry bytes; none of ours does
        }
        return cls(context, headers, headers.get(KEY_REQUEST_ID) or new_request_id())

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
        """Trailing metadata naming who answered: framework, version, request id, failover."""
        trailing = [
            (KEY_BACKEND, answer.backend),
            (KEY_VERSION, str(answer.version)),
            (KEY_REQUEST_ID, self.request_id),
            (KEY_SERVER_TIMING, server_timing(answer.timings)),
        ]
        if answer.failover:
            trailing.append((KEY_FAILOVER, "true"))
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
    ) -> grpc.RpcMethodHandler:
        """A unary handler for `method`; `model_of` marks a prediction method: admitted by
        the edge (RESOURCE_EXHAUSTED before any decoding), its errors counted under the
        model the request names."""

        edge = self.ctx.edge
        admitted = edge.admitted if model_of is not None else None
        protocol = self.protocol if model_of is not None else None
        where = f"in {self.protocol}"

        def error(exc: Exception, message: Any) -> GatewayError:
            model = (
                None if model_of is None or isinstance(message, Malformed) else model_of(message)
            )
            return edge.error(exc, protocol, model, where)

        async def behaviour(message: Any, context: grpc.aio.ServicerContext) -> Any:
            call = Call.of(context)
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

        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=lenient(request_type),
            response_serializer=response_type.SerializeToString,
        )


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
    """End the call with the error's gRPC code and sentence; the request id trails."""
    trailing = ((KEY_REQUEST_ID, call.request_id), *exc.trailing_metadata)
    await call.context.abort(exc.grpc_code, exc.message, trailing_metadata=trailing)
