"""The prediction routes without FastAPI's middleware stack.

FastAPI wraps every request in several middlewares (server errors, exceptions, body limit,
exit stacks) and matches it against every route; for the predict and infer endpoints, which
need none of that, it was about a third of the gateway's own work per request (measured
in process: 180-200 us through the app vs 125-130 us straight to the endpoint). A
`GatewayApp` sends POSTs that match one of `fast_routes` straight to its Starlette
endpoint, with the same error handlers; everything else goes through FastAPI unchanged.

Per request, the direct path also skips what a prediction does not need (measured in
process, per request): routes whose last literal part the path does not end with are not
matched at all (a v2 infer skipped nine TF Serving regexes, 5.5 -> 1 us), and the request's
headers are read from a dict built once (`HeaderTable`: ten lookups, most of them misses,
cost 7.9 us through Starlette's list scan, 1.7 us so).

Middleware added to a `GatewayApp` turns the direct path off (`add_middleware`), so no
middleware is ever skipped silently; an error on the direct path is answered by the
handler the app's one registry (`exception_handlers`) names for its type, as Starlette's
`ExceptionMiddleware` picks it, so a handler added later applies on `:predict` as on every
other route (tests/unit/protocols/test_gateway_fast_path.py). Both paths take their admission slot
from the gateway's one `Edge` (`gateway.edge.boundary`), as the gRPC ingress does.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Message, Receive, Scope, Send

from gateway.core.errors import GatewayError
from gateway.core.types import TraceContext
from gateway.telemetry import tracing

Handler = Callable[[Request, Exception], Awaitable[Response] | Response]


class GatewayApp(FastAPI):
    """FastAPI with a direct path to the plain Starlette prediction endpoints."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: list[tuple[str, Route, str]] = []
        self.direct = True

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        """Starlette's `add_middleware`, and every route then takes the ordinary path: the
        direct one would skip the middleware."""
        self.direct = False
        super().add_middleware(middleware_class, *args, **kwargs)

    def add_fast_routes(self, routes: Iterable[BaseRoute], protocol: str) -> None:
        """Serve these routes' POSTs directly: plain `Route`s, and `APIRoute`s whose
        endpoint takes only the request (any other parameter needs dependency injection);
        `protocol` labels their metrics. With `direct` off (CORS middleware configured)
        they take FastAPI's ordinary path, still behind admission control."""
        self.fast_routes += [
            (_literal_end(r.path), Route(r.path, r.endpoint, methods=list(r.methods)), protocol)
            for r in routes
            if isinstance(r, Route) and r.methods and "POST" in r.methods and _direct(r)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ctx = self.state.gateway
            if ctx.drain.draining:
                send = _closing(send)
            if scope["method"] == "POST":
                path = scope["path"]
                for end, route, protocol in self.fast_routes:
                    if not path.endswith(end):
                        continue  # cannot match: no regex run
                    match, child_scope = route.matches(scope)
                    if match is Match.FULL:
                        await self._prediction(route, child_scope, protocol, scope, receive, send)
                        return
        await super().__call__(scope, receive, send)

    async def _prediction(
        self, route: Route, child: Scope, protocol: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        edge = self.state.gateway.edge
        if not self.direct:
            trace = read_trace(scope, Headers(scope=scope))
            if tracing.TRACER is not None:
                _start_server_span(trace, route, protocol, {**scope, **child})
            send = _answering(send, trace)
            try:
                await edge.admitted(super().__call__, scope, receive, send)
            except GatewayError as exc:  # refused: FastAPI's own handlers answer any later one
                request = Request({**scope, **child, "app": self}, receive)  # as FastAPI's
                response = await self._answer(request, protocol, exc)
                await response(scope, receive, send)
            finally:
                if trace.span is not None:
                    tracing.end(trace.span)
            return
        scope.update(child)
        scope["app"] = self
        request = PredictionRequest(scope, receive)
        trace = read_trace(scope, request.headers)
        if tracing.TRACER is not None:
            _start_server_span(trace, route, protocol, scope)
        try:  # shed before the body is read (429, Retry-After)
            response = await edge.admitted(route.endpoint, request)
        except Exception as exc:
            response = await self._answer(request, protocol, exc)
        response.raw_headers.append((b"traceparent", trace.traceparent.encode()))
        try:
            await response(scope, receive, send)
        finally:
            if trace.span is not None:
                _end_server_span(trace, response.status_code)

    async def _answer(self, request: Request, protocol: str, exc: Exception) -> Response:
        """The response of the handler registered for `exc` (as FastAPI's path would pick
        it); the error is counted under `protocol` even when the endpoint never ran."""
        if not hasattr(request.state, "protocol"):  # refused before the endpoint ran
            request.state.protocol = protocol
        handler = exception_handler(self.exception_handlers, exc)
        if handler is None:
            raise exc
        if inspect.iscoroutinefunction(handler):
            return await handler(request, exc)  # type: ignore[no-any-return]
        return await run_in_threadpool(handler, request, exc)  # type: ignore[arg-type]


def read_trace(scope: Scope, headers: Headers) -> TraceContext:
    """The request's W3C trace context, from its `traceparent`/`tracestate` headers (the REST
    ingress's one reader of them; `gateway.telemetry.tracing`), kept in the ASGI scope for
    the endpoint (`trace_of`)."""
    trace = tracing.incoming(headers.get("traceparent"), headers.get("tracestate"))
    scope["dualserve.trace"] = trace
    return trace


def trace_of(request: Request) -> TraceContext | None:
    """The trace context `read_trace` left on the request (None: it came another way)."""
    return request.scope.get("dualserve.trace")  # type: ignore[no-any-return]


def _start_server_span(trace: TraceContext, route: Route, protocol: str, scope: Scope) -> None:
    """The HTTP server span of a prediction (OpenTelemetry's HTTP semantic conventions)."""
    server = scope.get("server") or ("", None)
    attributes = {
        "http.request.method": "POST",
        "http.route": route.path,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "server.address": server[0],
        "server.port": server[1] or 0,
        "network.protocol.version": scope.get("http_version", "1.1"),
        "dualserve.protocol": protocol,
        "dualserve.model": scope.get("path_params", {}).get("model", ""),
    }
    tracing.start_server(trace, f"POST {route.path}", attributes)


def _end_server_span(trace: TraceContext, status: int) -> None:
    failure = str(status) if status >= 500 else None  # a server span's error: 5xx only
    tracing.end(trace.span, failure, {"http.response.status_code": status})


def _answering(send: Send, trace: TraceContext) -> Send:
    """`send` with the request's `traceparent` on the response (and, tracing on, its status
    on the server span): the ordinary path's way, whose response this code never holds."""

    async def answering(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"traceparent", trace.traceparent.encode())]
            message["headers"] = headers
            if trace.span is not None:
                status = message["status"]
                trace.span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    tracing.fail(trace.span, str(status))
        await send(message)

    return answering


def exception_handler(handlers: Mapping[Any, Handler], exc: Exception) -> Handler | None:
    """The handler Starlette's `ExceptionMiddleware` picks for `exc`: an `HTTPException`'s
    by its status code first, then the one of the nearest class in the exception's MRO
    (starlette/_exception_handler.py, `_lookup_exception_handler`); None: no handler."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _literal_end(path: str) -> str:
    """What every path a route template matches ends with: the text after its last
    parameter, e.g. ':predict' for '/v1/models/{model}:predict'."""
    return path.rpartition("}")[2]


class HeaderTable(Headers):
    """Starlette's `Headers`, looked up in a dict built once: `Headers` scans its list on
    every lookup, and a miss (most of a prediction's ~10 lookups) raises and catches a
    KeyError inside `Mapping.get`. Names are lower case (ASGI); of repeated names the
    first wins, as in `Headers`."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        self._table = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(self._list)}

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._table.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._table[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._table


class PredictionRequest(Request):
    """A `Request` whose headers are a `HeaderTable`."""

    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_headers"):
            self._headers = HeaderTable(self.scope)
        return self._headers


def _direct(route: Route) -> bool:
    """Whether the endpoint can be called as `endpoint(request)`."""
    if not isinstance(route, APIRoute):
        return type(route) is Route
    needs = route.dependant
    return not (
        needs.path_params
        or needs.query_params
        or needs.header_params
        or needs.cookie_params
        or needs.body_params
        or needs.dependencies
    )


def _closing(send: Send) -> Send:
    """`send` with `Connection: close` on the response (while draining)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await send(message)

    return closing
