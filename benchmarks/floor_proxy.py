"""The floor of any Python hop: a pass-through proxy that forwards bytes, parses nothing.

uvicorn (uvloop + httptools, as the gateway runs) with one pooled aiohttp session: each
request's path, body, `Content-Type` and `Authorization` go to one upstream, whose status,
`Content-Type` and body come back. `benchmarks.gateway` runs it next to the gateway so
the gateway's cost is read as a ratio to what a Python hop must cost on the same cores.

    python -m benchmarks.floor_proxy --upstream http://127.0.0.1:8501 --port 9000
"""

from __future__ import annotations

from typing import Annotated, Any

import aiohttp
import typer
from starlette.types import Message, Receive, Scope, Send

_FORWARDED = (b"content-type", b"authorization")


class FloorProxy:
    """A raw ASGI app forwarding every HTTP request to `upstream` (a base URL).

    Args:
        upstream: `http://host:port` of the one backend.
        max_connections: pooled keep-alive connections to it.
    """

    def __init__(self, upstream: str, max_connections: int = 64) -> None:
        self.upstream = upstream.rstrip("/")
        self.max_connections = max_connections
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=self.max_connections)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None, "the lifespan opens the session"
        body = await _body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in _FORWARDED}
        url = self.upstream + scope["raw_path"].decode()
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode()
        async with self.session.request(scope["method"], url, data=body, headers=headers) as r:
            payload = await r.read()
            kind = r.headers.get("Content-Type", "application/octet-stream").encode()
            status = r.status
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind)],
        }
        await send(start)
        await send({"type": "http.response.body", "body": payload})


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def main(
    upstream: Annotated[str, typer.Option(help="the backend's base URL")],
    port: Annotated[int, typer.Option(help="port to listen on (loopback)")],
    host: str = "127.0.0.1",
) -> None:
    """Serve the pass-through proxy until SIGTERM."""
    import uvicorn

    uvicorn.run(
        FloorProxy(upstream),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    typer.run(main)
