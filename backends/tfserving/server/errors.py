"""The server's one error tree: each error carries its HTTP status and its gRPC code.

REST answers `{"error": message}` with `http_status`; gRPC aborts with `grpc_code` (a
`grpc.StatusCode` member name, so this module needs no grpc import). Messages mirror
TF Serving's texts where it has one, so clients that match on them keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus


class ServingError(Exception):
    """Base class; subclasses fix the status pair, the message names the problem."""

    http_status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    grpc_code: str = "INTERNAL"
    headers: Mapping[str, str] = {}
    """HTTP headers the REST error response carries (e.g. a 415's `Accept-Encoding`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """Bad input: unknown input name, wrong shape or dtype, malformed JSON."""

    http_status = HTTPStatus.BAD_REQUEST
    grpc_code = "INVALID_ARGUMENT"


class PayloadTooLarge(ServingError):
    """A (decoded) request body over the server's size limit."""

    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ServingError):
    """A request body in a content coding the server does not decode (RFC 9110 §15.5.16)."""

    http_status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    grpc_code = "INVALID_ARGUMENT"


class FailedPrecondition(ServingError):
    """The request does not fit the servable (e.g. an unknown signature name)."""

    http_status = HTTPStatus.BAD_REQUEST
    grpc_code = "FAILED_PRECONDITION"


class NotFound(ServingError):
    """Unknown model, version or route."""

    http_status = HTTPStatus.NOT_FOUND
    grpc_code = "NOT_FOUND"


class Unavailable(ServingError):
    """The batching queue is full or the server is shutting down."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = "UNAVAILABLE"


class DeadlineExceeded(ServingError):
    """The request outlived `--rest_api_timeout_in_ms`."""

    http_status = HTTPStatus.GATEWAY_TIMEOUT
    grpc_code = "DEADLINE_EXCEEDED"


class Unimplemented(ServingError):
    """An API TF Serving has that this server does not (Classify, Regress, ...)."""

    http_status = HTTPStatus.NOT_IMPLEMENTED
    grpc_code = "UNIMPLEMENTED"


class InternalError(ServingError):
    """The model itself failed; the message carries TensorFlow's reason."""


def servable_not_found(model: str, version: int | None) -> NotFound:
    """TF Serving's text for a predict/metadata call on a model or version not loaded."""
    request = f"Latest({model})" if version is None else f"Specific({model}, {version})"
    return NotFound(f"Servable not found for request: {request}")
