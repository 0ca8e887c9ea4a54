"""One error tree: every failure carries its HTTP status, its gRPC code and a sentence.

Protocols translate these into their own error form with one handler per transport;
nothing else decides a status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus

import grpc


class GatewayError(Exception):
    """Base: `status` for HTTP, `grpc_code` for gRPC, the message names the problem.

    Args:
        message: the sentence the client reads.
        headers: HTTP headers its cause needs on the reply (e.g. `Allow` on a 405,
            `Accept-Encoding` on a 415; RFC 9110 §15.5.6, §12.5.3).
    """

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self._headers = dict(headers or {})

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the error reply carries (a fresh dict: callers may add to it)."""
        return dict(self._headers)

    @property
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC trailing metadata the error carries; none by default."""
        return ()


class BadRequest(GatewayError):
    """Malformed body, wrong tensor name, shape or dtype."""

    status = HTTPStatus.BAD_REQUEST
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(BadRequest):
    """The request asks for something the model does not have in this state (TF Serving
    uses it for an unknown `signature_name`); HTTP 400 as in TF Serving's REST API."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthorized(GatewayError):
    status = HTTPStatus.UNAUTHORIZED
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class Forbidden(GatewayError):
    """The request is understood but the model's policy does not allow it (e.g. pinning)."""

    status = HTTPStatus.FORBIDDEN
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(GatewayError):
    """Unknown model, version or label."""

    status = HTTPStatus.NOT_FOUND
    grpc_code = grpc.StatusCode.NOT_FOUND


class RequestTimeout(GatewayError):
    """The request body did not arrive in time (`limits.body_timeout_s`; RFC 9110 §15.5.9),
    or the client went away while sending it."""

    status = HTTPStatus.REQUEST_TIMEOUT
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class PayloadTooLarge(GatewayError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnsupportedMediaType(GatewayError):
    """A request body in a content coding the gateway cannot decode (RFC 9110 §15.5.16);
    the response lists the codings it accepts in `Accept-Encoding` (RFC 9110 §12.5.3)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Overloaded(GatewayError):
    """Shed load: a queue or concurrency limit is full.

    Args:
        retry_after_s: when the client may try again; sent as `Retry-After` in whole
            seconds, rounded up (RFC 9110 section 10.2.3).
    """

    status = HTTPStatus.TOO_MANY_REQUESTS
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}

    @property
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC's server pushback (gRFC A6 `grpc-retry-pushback-ms`): a client with a
        retry policy waits this long before its next attempt."""
        if self.retry_after_s is None:
            return ()
        return (("grpc-retry-pushback-ms", str(math.ceil(self.retry_after_s * 1000))),)


class RateLimited(Overloaded):
    """The API key's rate limit is used up (`auth.rate_limit`)."""


class UpstreamError(GatewayError):
    """A backend answered with an error the client did not cause."""

    status = HTTPStatus.BAD_GATEWAY
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend


class UpstreamUnavailable(UpstreamError):
    """No ready replica, connection refused, or the circuit breaker is open."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = grpc.StatusCode.UNAVAILABLE


class BreakerOpen(UpstreamUnavailable):
    """The arm's circuit breaker refuses calls after repeated failures (nothing was sent)."""


class UpstreamTimeout(UpstreamError):
    status = HTTPStatus.GATEWAY_TIMEOUT
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class DeadlineExceeded(GatewayError):
    """The client's own deadline passed before an answer could be had (no backend is to
    blame: no breaker counts it; see `gateway.edge.deadline`)."""

    status = HTTPStatus.GATEWAY_TIMEOUT
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UpstreamRejected(UpstreamError):
    """The backend refused the request as bad input (a 4xx that passed our validation)."""

    status = HTTPStatus.BAD_REQUEST
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
