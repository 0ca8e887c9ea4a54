"""What every REST ingress shares: headers, body limits, the error handler."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from gateway.core.errors import (
    BadRequest,
    GatewayError,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.core.types import Framework, InferResponse, new_request_id
from gateway.edge.boundary import Edge
from gateway.edge.limits import check_json_depth, check_request_id
from gateway.edge.limits import read_body as read_identity_body
from gateway.edge.security_settings import LimitsSettings
from gateway.routing.policy import parse_arm_pin, parse_pin
from gateway.telemetry.server_timing import HEADER as HEADER_SERVER_TIMING
from gateway.telemetry.server_timing import server_timing
from wire import content_coding, json_text

HEADER_BACKEND = "X-Backend"
HEADER_ARM = "X-Arm"
HEADER_VERSION = "X-Model-Version"
HEADER_REQUEST_ID = "X-Request-Id"
HEADER_ROUTING_KEY = "X-Routing-Key"
HEADER_FAILOVER = "X-Failover"
_JSON_TYPE = (b"content-type", b"application/json")
_ANSWER_KEYS = [
    name.lower().encode()
    for name in (HEADER_BACKEND, HEADER_VERSION, HEADER_REQUEST_ID, HEADER_SERVER_TIMING)
]
_KEY_FAILOVER = HEADER_FAILOVER.lower().encode()


def begin(request: Request, protocol: str) -> str:
    """Mark a prediction request (for error metrics) and return its request id: the
    client's X-Request-Id or a new one, kept on the request for error replies."""
    request.state.protocol = protocol
    value = request.headers.get(HEADER_REQUEST_ID) or new_request_id()
    limits = request.app.state.gateway.settings.limits
    request.state.request_id = check_request_id(value, limits, f"header {HEADER_REQUEST_ID}")
    return value


def pinned_backend(request: Request) -> Framework | None:
    return parse_pin(request.headers.get(HEADER_BACKEND), f"header {HEADER_BACKEND}")


def pinned_arm(request: Request) -> str | None:
    """The arm named by `X-Arm`, if any (the router checks it against the model's arms)."""
    return parse_arm_pin(request.headers.get(HEADER_ARM))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded per its Content-Encoding (gzip, deflate or identity; see
    `wire.content_coding`). `limit` applies to the decoded size, while it streams
    (identity bodies: `limits.read_body`).

    Raises:
        RequestTimeout: the body took longer than `limits.body_timeout_s`, or the client
            left while sending it (408; its admission slot is freed).
        PayloadTooLarge: the (decoded) body exceeds `limit` bytes.
        UnsupportedMediaType: any other Content-Encoding (415, with `Accept-Encoding`).
        BadRequest: a body that is not valid data of its coding.
    """
    limits: LimitsSettings = request.app.state.gateway.settings.limits
    try:
        with BodyTimer(limits.body_timeout_s):
            return await _read_decoded(request, limit)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {limits.body_timeout_s:g} s"
            " (limits.body_timeout_s)"
        ) from None
    except ClientDisconnect:
        raise RequestTimeout("the client closed the connection before sending its body") from None


class BodyTimer:
    """`asyncio.timeout(seconds)` for reading one request body, at a sixth of its cost
    (measured under uvloop: 6 -> 1 us per request, most bodies arriving in one message):
    one `call_later` handle that cancels the task, and asyncio.timeout's rule to tell its
    own cancellation from anyone else's (`Task.cancelling`/`uncancel`).

    Raises:
        TimeoutError: on leaving the block, when the time ran out inside it.
    """

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None, "BodyTimer is used inside a task"
        self._task = task
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        self._cancelling = self._task.cancelling()
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> None:
        self._handle.cancel()
        if not self._expired:
            return
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


async def _read_decoded(request: Request, limit: int) -> bytes:
    encoding = request.headers.get("content-encoding")
    if encoding is None:
        return await read_identity_body(request, limit)
    try:
        coding = content_coding.request_coding(encoding)
        if coding is not None:
            return await content_coding.decode_body(request.stream(), coding, limit)
    except content_coding.UnsupportedCoding as exc:
        accepted = {"Accept-Encoding": content_coding.ACCEPT_ENCODING}
        raise UnsupportedMediaType(str(exc), headers=accepted) from None
    except content_coding.BodyTooLarge as exc:
        raise PayloadTooLarge(f"{exc} (max_body_bytes)") from None
    except content_coding.CorruptBody as exc:
        raise BadRequest(str(exc)) from None
    return await read_identity_body(request, limit)


async def json_body(request: Request, limit: int, non_finite: bool = False) -> Any:
    """The parsed JSON body, decoded and limited as `read_body` says (see `parse_json`)."""
    raw = await read_body(request, limit)
    return parse_json(raw, request.app.state.gateway.settings.limits, non_finite)


def parse_json(raw: bytes, limits: LimitsSettings, non_finite: bool = False) -> Any:
    """A JSON document nested no deeper than `limits.max_json_depth`.

    Args:
        non_finite: accept the tokens `NaN`, `Infinity` and `-Infinity` (prediction
            bodies: TF Serving and Triton read them); configuration bodies refuse them.

    Raises:
        BadRequest: "malformed JSON body: ..." naming the parser's complaint, or the
            nesting limit.
    """
    check_json_depth(raw, limits)
    try:
        return json_text.loads(raw) if non_finite else orjson.loads(raw)
    except (json_text.JsonFormatError, orjson.JSONDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None


def json_response(
    content: Any, answer: InferResponse | None = None, status: int = 200
) -> EncodedResponse:
    """`content` as JSON (or as is, when already encoded bytes). Prediction answers (with
    `answer`) write float32 as float32 and non-finite numbers as `NaN`/`Infinity`, and
    carry the answer's headers (`answer_headers`)."""
    if isinstance(content, bytes):
        body = content
    elif answer is not None:
        body = json_text.dumps(content)
    else:
        body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    headers = answer_headers(answer) if answer is not None else []
    headers += [(b"content-length", str(len(body)).encode()), _JSON_TYPE]
    return EncodedResponse(body, status, headers)


class EncodedResponse(Response):
    """A `Response` of encoded headers: what `Response.__init__` builds from a dict of
    str (encoding, lower-casing, a header list scanned for content-length and -type),
    built by the caller at a fifth of the cost (measured: 5.6 -> 1.1 us per reply).

    Args:
        body: the body's bytes.
        status: the HTTP status.
        raw_headers: lower-case names and values in bytes, content-length and
            content-type included.
    """

    def __init__(self, body: bytes, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def answer_headers(answer: InferResponse) -> list[tuple[bytes, bytes]]:
    """X-Backend, X-Model-Version, X-Request-Id, Server-Timing and (after a failover)
    X-Failover of a prediction answer, encoded."""
    values = (
        answer.backend.encode(),
        str(answer.version).encode(),
        answer.request_id.encode("latin-1"),
        server_timing(answer.timings).encode(),
    )
    headers = list(zip(_ANSWER_KEYS, values, strict=True))
    if answer.failover:
        headers.append((_KEY_FAILOVER, b"true"))
    return headers


async def gateway_error_handler(request: Request, exc: Exception) -> Response:
    """Every GatewayError becomes `{"error": message}` with its status (TF Serving and
    KServe v2 share this form), and X-Request-Id when the request had one; counted by the
    edge when the request is a prediction."""
    assert isinstance(exc, GatewayError)
    error = _edge_error(request, exc)
    headers = error.headers
    rid = getattr(request.state, "request_id", None)
    if rid:
        headers[HEADER_REQUEST_ID] = rid
    return error_response(error, headers)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, counted as a 500, answered without detail."""
    error = _edge_error(request, exc)
    return error_response(error, error.headers)


def _edge_error(request: Request, exc: Exception) -> GatewayError:
    """The edge's error for `exc` (`Edge.error`), counted when a prediction route marked
    the request with its protocol (`begin`)."""
    edge: Edge = request.app.state.gateway.edge
    protocol = getattr(request.state, "protocol", None)
    model = request.path_params.get("model") if protocol is not None else None
    return edge.error(exc, protocol, model, f"on {request.scope['path']}")


def error_response(error: GatewayError, headers: dict[str, str]) -> Response:
    """`{"error": message}` with the error's status and `headers`."""
    return Response(
        orjson.dumps({"error": error.message}),
        status_code=int(error.status),
        media_type="application/json",
        headers=headers,
    )
