"""HEAD wherever GET is served (RFC 9110 §9.3.2: "identical to GET except that the server
MUST NOT send content in the response"; a server that serves GET SHOULD serve HEAD).

FastAPI's `APIRoute` answers only the methods it was declared with, so `HEAD` on a status,
metadata or health path was a 405. `serve_head` gives every GET route of a router a HEAD
twin: the same endpoint runs and answers the same status and headers (Content-Length
included, as GET's); the server (uvicorn, h11 and httptools alike) drops the body of a HEAD
response. The twins stay out of the OpenAPI document, as frameworks serve HEAD implicitly
(schemathesis treats it so too), and a 405's `Allow` lists HEAD beside GET.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute


def serve_head(router: APIRouter) -> int:
    """Add a HEAD route beside every GET route of `router` (idempotent: `create_app` may run
    many times over the same module-level routers); the number added."""
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    served = {r.path for r in routes if "HEAD" in (r.methods or ())}
    added = 0
    for route in routes:
        if "GET" in (route.methods or ()) and route.path not in served:
            router.add_api_route(
                route.path.removeprefix(router.prefix),  # add_api_route prefixes it again
                route.endpoint,
                methods=["HEAD"],
                include_in_schema=False,
                response_class=route.response_class,
            )
            served.add(route.path)
            added += 1
    return added
