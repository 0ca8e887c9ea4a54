"""OIP v2 REST on aiohttp: health, server and model metadata, readiness, infer (JSON and
binary tensor data), Triton's repository index, and `/metrics`.

Paths and bodies as KServe's Open Inference Protocol (REST) gives them; the repository
index (`POST /v2/repository/index`) as Triton's model repository extension answers it
(docs/protocol/extension_model_repository.md). Errors are `{"error": sentence}` with the
status of `backends.oip.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from backends.oip.core import OipCore
from backends.oip.errors import InvalidInput, OipError
from backends.oip.metrics import CONTENT_TYPE
from backends.oip.rest_codec import HEADER_LENGTH, decode_infer, encode_infer
from backends.oip.server_info import model_metadata, server_metadata

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE = web.AppKey("core", OipCore)


def create_app(core: OipCore, max_body_bytes: int) -> web.Application:
    """The REST application; bodies past `max_body_bytes` get 413 (aiohttp's bound)."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_errors])
    app[CORE] = core
    model = "/v2/models/{model}"
    versioned = model + "/versions/{version}"
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    app.router.add_get("/v2", _server)
    app.router.add_post("/v2/repository/index", _index)
    app.router.add_get("/metrics", _metrics)
    for base in (model, versioned):
        app.router.add_get(base, _metadata)
        app.router.add_get(base + "/ready", _model_ready)
        app.router.add_post(base + "/infer", _infer)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OipError as exc:
        return _json({"error": exc.message}, int(exc.status))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _core(request: web.Request) -> OipCore:
    return request.app[CORE]


def version_of(request: web.Request) -> int | None:
    """The path's version, a positive integer, or None.

    Raises:
        InvalidInput: naming the version that is not one.
    """
    text = request.match_info.get("version")
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"version '{text}' must be a positive integer")
    return int(text)


async def _live(request: web.Request) -> web.Response:
    return _json({"live": True})


async def _ready(request: web.Request) -> web.Response:
    ready = bool(_core(request).repository.models())
    return _json({"ready": ready}, 200 if ready else 503)


async def _server(request: web.Request) -> web.Response:
    return _json(server_metadata())


async def _metadata(request: web.Request) -> web.Response:
    repository = _core(request).repository
    served = repository.get(request.match_info["model"], version_of(request))
    return _json(model_metadata(served, repository))


async def _model_ready(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    try:
        _core(request).repository.get(name, version_of(request))
    except OipError as exc:
        if isinstance(exc, InvalidInput):
            raise
        return _json({"name": name, "ready": False}, 503)
    return _json({"name": name, "ready": True})


async def _index(request: web.Request) -> web.Response:
    entries = _core(request).repository.index()
    return _json(
        [
            {"name": e.name, "version": str(e.version), "state": e.state, "reason": e.reason}
            for e in entries
        ]
    )


async def _metrics(request: web.Request) -> web.Response:
    page = _core(request).metrics.page()
    return web.Response(body=page, headers={"Content-Type": CONTENT_TYPE})


async def _infer(request: web.Request) -> web.Response:
    raw = await request.read()
    decoded = decode_infer(raw, request.headers.get(HEADER_LENGTH))
    model = request.match_info["model"]
    served, outputs = await _core(request).infer(
        model, version_of(request), decoded.inputs, decoded.outputs
    )
    body, head_length = encode_infer(served.name, served.version, decoded, outputs)
    if head_length is None:
        return web.Response(body=body, content_type="application/json")
    headers = {HEADER_LENGTH: str(head_length)}
    return web.Response(body=body, headers=headers, content_type="application/octet-stream")
