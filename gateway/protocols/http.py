"""What every REST ingress shares: headers, body limits, the error handler."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from gateway.errors import BadRequest, GatewayError, PayloadTooLarge
from gateway.routing.policy import parse_pin
from gateway.server_timing import HEADER as HEADER_SERVER_TIMING
from gateway.server_timing import server_timing
from gateway.types import Framework, InferResponse, new_request_id

logger = logging.getLogger(__name__)

HEADER_BACKEND = "X-Backend"
HEADER_VERSION = "X-Model-Version"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_ROUTING_KEY = "X-Routing-Key"
HEADER_FAILOVER = "X-Failover"


def begin(request: Request, protocol: str) -> str:
    """Mark a prediction request (for error metrics) and return its request id: the
    client's X-Request-Id or a new one, kept on the request for error replies."""
    request.state.protocol = protocol
    value = request.headers.get(HEADER_REQUEST_ID) or new_request_id()
    request.state.request_id = value
    return value


def pinned_backend(request: Request) -> Framework | None:
    return parse_pin(request.headers.get(HEADER_BACKEND), f"header {HEADER_BACKEND}")


async def json_body(request: Request, limit: int) -> Any:
    """The parsed JSON body, refusing bodies over `limit` bytes before reading them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    raw = await request.body()
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body of {len(raw)} bytes exceeds the limit of {limit}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def json_response(content: Any, answer: InferResponse | None = None, status: int = 200) -> Response:
    headers = {}
    if answer is not None:
        headers = {
            HEADER_BACKEND: answer.backend,
            HEADER_VERSION: str(answer.version),
            HEADER_REQUEST_ID: answer.request_id,
            HEADER_SERVER_TIMING: server_timing(answer.timings),
        }
        if answer.failover:
            headers[HEADER_FAILOVER] = "true"
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def gateway_error_handler(request: Request, exc: Exception) -> Response:
    """Every GatewayError becomes `{"error": message}` with its status (TF Serving and
    KServe v2 share this form)."""
    assert isinstance(exc, GatewayError)
    protocol = getattr(request.state, "protocol", None)
    if protocol is not None:
        dataplane = request.app.state.gateway.dataplane
        dataplane.count_error(protocol, request.path_params.get("model"), exc)
    headers = {}
    rid = getattr(request.state, "request_id", None)
    if rid:
        headers[HEADER_REQUEST_ID] = rid
    return Response(
        orjson.dumps({"error": exc.message}),
        status_code=int(exc.status),
        media_type="application/json",
        headers=headers,
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s", request.url.path)
    return Response(
        orjson.dumps({"error": "internal error in the gateway; see its log"}),
        status_code=500,
        media_type="application/json",
    )
