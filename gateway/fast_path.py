"""The prediction routes without FastAPI's middleware stack.

FastAPI wraps every request in several middlewares (server errors, exceptions, body limit,
exit stacks) and matches it against every route; for the predict and infer endpoints, which
need none of that, it was about a third of the gateway's own work per request (measured
in process: 180-200 us through the app vs 125-130 us straight to the endpoint). A
`GatewayApp` sends POSTs that match one of `fast_routes` straight to its Starlette
endpoint, with the same error handlers; everything else goes through FastAPI unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Message, Receive, Scope, Send

from gateway.admission import Admission
from gateway.errors import GatewayError
from gateway.protocols.http import gateway_error_handler, unexpected_error_handler


class GatewayApp(FastAPI):
    """FastAPI with a direct path to the plain Starlette prediction endpoints."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: list[tuple[Route, str]] = []
        self.direct = True

    def add_fast_routes(self, routes: Iterable[BaseRoute], protocol: str) -> None:
        """Serve these routes' POSTs directly: plain `Route`s, and `APIRoute`s whose
        endpoint takes only the request (any other parameter needs dependency injection);
        `protocol` labels their metrics. With `direct` off (CORS middleware configured)
        they take FastAPI's ordinary path, still behind admission control."""
        self.fast_routes += [
            (Route(r.path, r.endpoint, methods=list(r.methods)), protocol)  # cheaper matches
            for r in routes
            if isinstance(r, Route) and r.methods and "POST" in r.methods and _direct(r)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            ctx = self.state.gateway
            if ctx.drain.draining:
                send = _closing(send)
            if scope["method"] == "POST":
                for route, protocol in self.fast_routes:
                    match, child_scope = route.matches(scope)
                    if match is Match.FULL:
                        await self._prediction(route, child_scope, protocol, scope, receive, send)
                        return
        await super().__call__(scope, receive, send)

    async def _prediction(
        self, route: Route, child: Scope, protocol: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        admission = self.state.gateway.admission
        if self.direct:
            scope.update(child)
            scope["app"] = self
            await _serve(route, protocol, admission, scope, receive, send)
            return
        try:
            admission.acquire()
        except GatewayError as exc:
            request = Request(scope, receive)
            request.state.protocol = protocol
            await (await gateway_error_handler(request, exc))(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            admission.release()


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


async def _serve(
    route: Route, protocol: str, admission: Admission, scope: Scope, receive: Receive, send: Send
) -> None:
    request = Request(scope, receive)
    try:
        with admission.admitted():  # shed before the body is read (429, Retry-After)
            response = await route.endpoint(request)
    except GatewayError as exc:
        if not hasattr(request.state, "protocol"):  # refused before the endpoint ran
            request.state.protocol = protocol
        response = await gateway_error_handler(request, exc)
    except Exception as exc:  # what FastAPI's handler for Exception would answer
        response = await unexpected_error_handler(request, exc)
    await response(scope, receive, send)
