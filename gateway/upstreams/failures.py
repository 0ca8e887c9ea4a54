"""The one table that turns backend failures into `gateway.core.errors`.

Every client calls exactly one of these at its boundary (`raise from_grpc(...) from exc`):
gRPC status codes, HTTP statuses with the backend's error body, and transport errors
(timeouts, refused connections). Messages start with the backend ("pytorch: ...") and
name the model and version the call was about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

import grpc

from gateway.core.errors import (
    GatewayError,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.types import Framework

_MAX_TEXT = 500  # backend texts are passed on, but a page of HTML is not a sentence
_AUTH_HINT = "the backend refused the gateway's credentials (check the TorchServe token)"
_REJECTED_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
# TorchServe 0.12 answers a missing or wrong token with 400 InvalidKeyException, and an
# unknown model or version over gRPC with INTERNAL; their texts say what happened.
_AUTH_MARKERS = ("InvalidKeyException", "Token Authorization failed")
_NOT_FOUND_MARKERS = ("Model not found", "ModelNotFoundException", "ModelVersionNotFound")
_AUTH_GRPC = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
_HTTP_KINDS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "rejected",
    HTTPStatus.UNAUTHORIZED: "auth",
    HTTPStatus.FORBIDDEN: "auth",
    HTTPStatus.NOT_FOUND: "not_found",
    HTTPStatus.REQUEST_TIMEOUT: "timeout",
    HTTPStatus.GATEWAY_TIMEOUT: "timeout",
    HTTPStatus.SERVICE_UNAVAILABLE: "unavailable",
}


@dataclass(frozen=True)
class Target:
    """What a call was about, for error messages."""

    backend: Framework
    model: str
    version: int | str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"model '{self.model}' version {self.version}"
        return f"model '{self.model}'"


def from_grpc(exc: grpc.RpcError, target: Target) -> GatewayError:
    """A gateway error for a failed gRPC call."""
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return _classify(_refine(_grpc_kind(code), details or ""), target, _clean(details or code.name))


def from_http(status: int, body: bytes, target: Target) -> GatewayError:
    """A gateway error for a non-2xx HTTP answer; `body` is the backend's error body."""
    kind = _refine(_http_kind(status), body.decode("utf-8", "replace"))
    return _classify(kind, target, f"HTTP {status}: {error_text(body)}")


def from_transport(exc: BaseException, target: Target) -> GatewayError:
    """A gateway error for an exception raised before any answer arrived."""
    if isinstance(exc, TimeoutError):
        return _classify("timeout", target, "no answer in time")
    if isinstance(exc, ConnectionError):  # refused, reset, closed mid-answer
        return _classify("unavailable", target, _clean(str(exc) or type(exc).__name__))
    return _classify("error", target, _clean(f"{type(exc).__name__}: {exc}"))


def error_text(body: bytes) -> str:
    """The sentence in a backend's error body.

    TorchServe answers `{"code", "type", "message"}`, TF Serving and the dualserve handler
    `{"error": ...}`; anything else is passed on as (shortened) text.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return _clean(text) or "(empty body)"
    if isinstance(payload, dict):
        message = payload.get("message") or payload.get("error") or payload.get("type")
        if isinstance(message, str) and message:
            return _clean(message)
    return _clean(text)


def _refine(kind: str, text: str) -> str:
    """TorchServe's texts override its codes for token and not-found failures."""
    if kind in ("rejected", "error") and any(m in text for m in _AUTH_MARKERS):
        return "auth"
    if kind == "error" and any(m in text for m in _NOT_FOUND_MARKERS):
        return "not_found"
    return kind


def _grpc_kind(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timeout"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unavailable"
    if code == grpc.StatusCode.NOT_FOUND:
        return "not_found"
    if code in _REJECTED_GRPC:
        return "rejected"
    return "auth" if code in _AUTH_GRPC else "error"


def _http_kind(status: int) -> str:
    return _HTTP_KINDS.get(status, "error")


def _classify(kind: str, target: Target, detail: str) -> GatewayError:
    backend = target.backend
    if kind == "timeout":
        return UpstreamTimeout(backend, f"{target} timed out ({detail})")
    if kind == "unavailable":
        return UpstreamUnavailable(backend, f"{target} unavailable ({detail})")
    if kind == "not_found":
        return NotFound(f"{backend}: {target} not found ({detail})")
    if kind == "rejected":
        return UpstreamRejected(backend, f"{target} rejected the request: {detail}")
    if kind == "auth":
        return UpstreamError(backend, f"{_AUTH_HINT}: {detail}")
    return UpstreamError(backend, f"{target} failed: {detail}")


def _clean(text: str) -> str:
    # TorchServe appends the Java exception class on its own line to gRPC details.
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= _MAX_TEXT else first[:_MAX_TEXT] + "..."
