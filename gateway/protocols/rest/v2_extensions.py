"""Triton's statistics, model configuration and repository index extensions on v2 REST.

`GET /v2/models/stats`, `GET /v2/models/{m}[/versions/{v}]/stats`,
`GET /v2/models/{m}[/versions/{v}]/config` and `POST /v2/repository/index` (body optional:
`{"ready": true}` keeps the ready models). The answers are built in
`gateway.protocols.model_repository`; they are read-only (the catalog is the manifest).
An unknown model or version is 404, a version that is not a positive integer 400, as on
every v2 route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.context import GatewayContext
from gateway.core.errors import BadRequest
from gateway.protocols import model_repository
from gateway.protocols.rest.http import json_body, json_response
from gateway.protocols.rest.openapi import operation, ref
from gateway.protocols.rest.schemas import (
    ModelConfigResponse,
    ModelStatisticsResponse,
    RepositoryIndexEntry,
    RepositoryIndexRequest,
)

router = APIRouter()
_INDEX = operation(
    extra={
        200: {
            "description": "one entry per model version",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": ref(RepositoryIndexEntry)}
                }
            },
        }
    },
)
_INDEX["openapi_extra"]["requestBody"] = {
    "required": False,
    "content": {"application/json": {"schema": ref(RepositoryIndexRequest)}},
}


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive integer, got '{text}'")
    return int(text)


_STATS = operation(ModelStatisticsResponse, statuses=(401,))
_CONFIG = operation(ModelConfigResponse)


# Endpoints read `request.path_params`: one endpoint serves paths with and without a
# version, and no route declares a query parameter it does not read.
async def model_statistics(request: Request) -> Response:
    """Statistics need the predict credentials (they tell other clients' traffic);
    the configuration and the index are public, as model metadata and status are."""
    ctx, params = _ctx(request), request.path_params
    ctx.auth.check_predict(request.headers)
    body = model_repository.statistics(ctx, params.get("model"), _version(params.get("version")))
    return json_response(body)


async def model_config(request: Request) -> Response:
    params = request.path_params
    info = _ctx(request).catalog.get(params["model"])
    return json_response(model_repository.model_config(info, _version(params.get("version"))))


for _path in (
    "/v2/models/stats",
    "/v2/models/{model}/stats",
    "/v2/models/{model}/versions/{version}/stats",
):
    router.add_api_route(_path, model_statistics, methods=["GET"], **_STATS)
for _path in ("/v2/models/{model}/config", "/v2/models/{model}/versions/{version}/config"):
    router.add_api_route(_path, model_config, methods=["GET"], **_CONFIG)


@router.post("/v2/repository/index", **_INDEX)
async def repository_index(request: Request) -> Response:
    ctx = _ctx(request)
    body: Any = {}
    if _has_body(request):
        body = await json_body(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict) or set(body) - {"ready"}:
        raise BadRequest("the index request must be an object with at most 'ready'")
    ready = body.get("ready")
    if ready is None:  # absent or null: every model
        ready = False
    if not isinstance(ready, bool):
        raise BadRequest("'ready' must be true or false")
    return json_response(await model_repository.repository_index(ctx, ready))


def _has_body(request: Request) -> bool:
    """Whether the request carries a body (tritonclient sends an empty one)."""
    headers = request.headers
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
