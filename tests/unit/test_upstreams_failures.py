"""The one table from backend failures to gateway errors."""

from __future__ import annotations

import grpc
import pytest

from gateway.core.errors import (
    GatewayError,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.upstreams.failures import Target, error_text, from_grpc, from_http, from_transport
from gateway.upstreams.transports.http1 import ProtocolError

TARGET = Target("pytorch", "digits-mlp", 2)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


GRPC_TABLE = [
    (grpc.StatusCode.DEADLINE_EXCEEDED, UpstreamTimeout),
    (grpc.StatusCode.UNAVAILABLE, UpstreamUnavailable),
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.INVALID_ARGUMENT, UpstreamRejected),
    (grpc.StatusCode.FAILED_PRECONDITION, UpstreamRejected),
    (grpc.StatusCode.UNAUTHENTICATED, UpstreamError),
    (grpc.StatusCode.PERMISSION_DENIED, UpstreamError),
    (grpc.StatusCode.INTERNAL, UpstreamError),
    (grpc.StatusCode.UNKNOWN, UpstreamError),
]
HTTP_TABLE = [
    (400, UpstreamRejected),
    (401, UpstreamError),
    (403, UpstreamError),
    (404, NotFound),
    (408, UpstreamTimeout),
    (500, UpstreamError),
    (502, UpstreamError),
    (503, UpstreamUnavailable),
    (504, UpstreamTimeout),
    (599, UpstreamError),
]


@pytest.mark.parametrize(("code", "expected"), GRPC_TABLE, ids=lambda v: getattr(v, "name", ""))
def test_grpc_codes(code: grpc.StatusCode, expected: type[GatewayError]) -> None:
    error = from_grpc(FakeRpcError(code, "the backend's words"), TARGET)
    assert type(error) is expected
    assert error.message.startswith("pytorch: ")
    assert "the backend's words" in error.message


@pytest.mark.parametrize(("status", "expected"), HTTP_TABLE)
def test_http_statuses(status: int, expected: type[GatewayError]) -> None:
    error = from_http(status, b'{"error": "bad thing"}', TARGET)
    assert type(error) is expected
    assert error.message.startswith("pytorch: ")
    assert "bad thing" in error.message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), UpstreamTimeout),
        (TimeoutError(), UpstreamTimeout),
        (ConnectionRefusedError(111, "Connection refused"), UpstreamUnavailable),
        (ConnectionResetError("the backend closed the connection"), UpstreamUnavailable),
        (ProtocolError("unreadable HTTP answer"), UpstreamError),
    ],
    ids=lambda v: type(v).__name__,
)
def test_transport_errors(exc: BaseException, expected: type[GatewayError]) -> None:
    assert type(from_transport(exc, TARGET)) is expected


def test_not_found_names_model_version_and_backend() -> None:
    error = from_http(404, b'{"code": 404, "type": "X", "message": "Model not found"}', TARGET)
    assert error.message == (
        "pytorch: model 'digits-mlp' version 2 not found (HTTP 404: Model not found)"
    )


def test_token_problems_are_the_gateways_fault() -> None:
    error = from_grpc(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "bad token"), TARGET)
    assert error.status == 502
    assert "token" in error.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"code": 400, "type": "InputError", "message": "input: expected shape"}', "input: "),
        (b'{"error": "Servable not found for request"}', "Servable not found for request"),
        (b"plain words\nsecond line", "plain words"),
        (b"", "(empty body)"),
        (b"x" * 2000, "x" * 500 + "..."),
    ],
)
def test_backend_error_bodies_are_normalised(body: bytes, text: str) -> None:
    assert error_text(body).startswith(text)


def test_torchserve_grpc_details_lose_the_java_class_line() -> None:
    details = "Model not found\norg.pytorch.serve.http.InternalServerException"
    error = from_grpc(FakeRpcError(grpc.StatusCode.NOT_FOUND, details), TARGET)
    assert "InternalServerException" not in error.message


def test_targets_describe_version_and_model() -> None:
    assert str(Target("tensorflow", "m")) == "model 'm'"


def test_torchserve_invalid_key_is_a_token_problem_not_bad_input() -> None:
    body = b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed"}'
    error = from_http(400, body, TARGET)
    assert type(error) is UpstreamError
    assert "token" in error.message


def test_torchserve_grpc_unknown_model_is_not_found_despite_internal() -> None:
    error = from_grpc(FakeRpcError(grpc.StatusCode.INTERNAL, "Model not found: x"), TARGET)
    assert type(error) is NotFound
