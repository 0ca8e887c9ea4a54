"""What every REST ingress shares: headers, body limits, the error handler."""

from __future__ import annotations

import logging
import zlib
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from backends import tfserving_json
from gateway.errors import BadRequest, GatewayError, PayloadTooLarge, UnsupportedMediaType
from gateway.routing.policy import parse_pin
from gateway.types import Framework, InferResponse, new_request_id

logger = logging.getLogger(__name__)

HEADER_BACKEND = "X-Backend"
HEADER_VERSION = "X-Model-Version"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_ROUTING_KEY = "X-Routing-Key"
HEADER_FAILOVER = "X-Failover"
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Request content codings (RFC 9110 §8.4.1) -> zlib window bits; "deflate" is the zlib
format (RFC 1950), as RFC 9110 §8.4.1.2 says and tritonclient sends."""
ACCEPTED_ENCODINGS = "gzip, deflate"


def begin(request: Request, protocol: str) -> str:
    """Mark a prediction request (for error metrics) and return its request id: the
    client's X-Request-Id or a new one, kept on the request for error replies."""
    request.state.protocol = protocol
    value = request.headers.get(HEADER_REQUEST_ID) or new_request_id()
    request.state.request_id = value
    return value


def pinned_backend(request: Request) -> Framework | None:
    return parse_pin(request.headers.get(HEADER_BACKEND), f"header {HEADER_BACKEND}")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded per its Content-Encoding (gzip, deflate or identity).

    `limit` applies to the decoded size, and decoding streams: a small compressed body
    that inflates past it is refused as soon as it does, never held in memory.

    Raises:
        PayloadTooLarge: the (decoded) body exceeds `limit` bytes.
        UnsupportedMediaType: any other Content-Encoding (415, with `Accept-Encoding`).
        BadRequest: a body that is not valid data of its coding.
    """
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    if coding in ("", "identity"):
        raw = await request.body()
        if len(raw) > limit:
            raise PayloadTooLarge(f"request body of {len(raw)} bytes exceeds the limit of {limit}")
        return raw
    if coding not in _CODINGS:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding '{coding}'; send {ACCEPTED_ENCODINGS} or identity",
            headers={"Accept-Encoding": ACCEPTED_ENCODINGS},
        )
    return await _inflate(request, coding, limit)


async def _inflate(request: Request, coding: str, limit: int) -> bytes:
    decoder = zlib.decompressobj(_CODINGS[coding])
    decoded = bytearray()
    try:
        async for chunk in request.stream():
            data = chunk
            while data:
                decoded += decoder.decompress(data, limit + 1 - len(decoded))
                if len(decoded) > limit:
                    raise PayloadTooLarge(
                        f"request body decodes to more than the limit of {limit} bytes"
                    )
                data = decoder.unconsumed_tail
    except zlib.error as exc:
        raise BadRequest(f"request body is not valid {coding} data: {exc}") from None
    if not decoder.eof:
        raise BadRequest(f"request body is not valid {coding} data: truncated")
    return bytes(decoded)


async def json_body(request: Request, limit: int, non_finite: bool = False) -> Any:
    """The parsed JSON body, decoded and limited as `read_body` says.

    Args:
        non_finite: accept the tokens `NaN`, `Infinity` and `-Infinity` (prediction
            bodies: TF Serving and Triton read them); configuration bodies refuse them.

    Raises:
        BadRequest: "malformed JSON body: ..." naming the parser's complaint.
    """
    raw = await read_body(request, limit)
    try:
        return tfserving_json.loads(raw) if non_finite else orjson.loads(raw)
    except (tfserving_json.JsonFormatError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def json_response(content: Any, answer: InferResponse | None = None, status: int = 200) -> Response:
    """`content` as JSON (or as is, when already encoded bytes). Prediction answers (with
    `answer`) write float32 as float32 and non-finite numbers as `NaN`/`Infinity`."""
    headers = {}
    if answer is not None:
        headers = {
            HEADER_BACKEND: answer.backend,
            HEADER_VERSION: str(answer.version),
            HEADER_REQUEST_ID: answer.request_id,
        }
        if answer.failover:
            headers[HEADER_FAILOVER] = "true"
    if isinstance(content, bytes):
        body = content
    elif answer is not None:
        body = tfserving_json.dumps(content)
    else:
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(
        body,
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
    headers = dict(exc.headers)
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
