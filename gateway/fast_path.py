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

    def add_fast_routes(self, routes: Iterable[BaseRoute], protocol: str) -> None:
        """Serve these routes' POSTs directly (plain `Route`s only: FastAPI's own routes
        need its dependency machinery); `protocol` labels their metrics."""
        self.fast_routes += [
            (r, protocol) for r in routes if type(r) is Route and r.methods and "POST" in r.methods
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
                        scope.update(child_scope)
                        scope["app"] = self
                        await _serve(route, protocol, ctx.admission, scope, receive, send)
                        return
        await super().__call__(scope, receive, send)


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
