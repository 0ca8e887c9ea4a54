"""The server's one error tree: each error carries its HTTP status and its gRPC code.

Statuses as Triton answers them (docs/protocol/README.md; KServe's "Open Inference
Protocol"): 400 bad input, 404 unknown model or version, 503 not ready or overloaded.
"""

from __future__ import annotations

from http import HTTPStatus

import grpc


class OipError(Exception):
    """A request the server refuses, with a sentence naming the field or limit."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(OipError):
    status = HTTPStatus.BAD_REQUEST
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(OipError):
    status = HTTPStatus.NOT_FOUND
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(OipError):
    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = grpc.StatusCode.UNAVAILABLE
