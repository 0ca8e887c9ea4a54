"""The admin API: read statistics, change a model's routing policy at run time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gateway.context import GatewayContext
from gateway.errors import BadRequest
from gateway.protocols.http import json_body, json_response
from gateway.settings import ModelPolicy

router = APIRouter(prefix="/admin")


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    ctx.auth.check_admin(request.headers)
    return ctx


@router.get("/models")
async def list_policies(request: Request) -> Response:
    ctx = _ctx(request)
    return json_response({m: p.model_dump() for m, p in sorted(ctx.router.policies.items())})


@router.get("/models/{model}/policy")
async def get_policy(request: Request, model: str) -> Response:
    ctx = _ctx(request)
    ctx.catalog.get(model)
    return json_response(ctx.router.policies[model].model_dump())


@router.put("/models/{model}/policy")
@router.patch("/models/{model}/policy")
async def update_policy(request: Request, model: str) -> Response:
    """Merge the given fields into the model's policy (e.g. `{"weights": {...}}`)."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    changes = await json_body(request, ctx.settings.max_body_bytes)
    if not isinstance(changes, dict):
        raise BadRequest("policy update must be a JSON object")
    merged = {**ctx.router.policies[model].model_dump(), **changes}
    try:
        policy = ModelPolicy.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "policy"
        raise BadRequest(f"{where}: {first['msg']}") from None
    ctx.router.set_policy(model, policy)
    return json_response(policy.model_dump())


def experiments_snapshot(ctx: GatewayContext) -> dict[str, Any]:
    stats = ctx.router.stats.snapshot()
    models = {
        model: {"policy": policy.model_dump(), **stats.get(model, {"arms": {}})}
        for model, policy in sorted(ctx.router.policies.items())
    }
    breakers = {arm: b.state.name.lower() for arm, b in ctx.router.breakers.items()}
    return {"models": models, "breakers": breakers}


@router.get("/experiments")
async def experiments(request: Request) -> Response:
    return json_response(experiments_snapshot(_ctx(request)))


@router.post("/experiments/reset")
async def reset(request: Request) -> Response:
    ctx = _ctx(request)
    ctx.router.stats.reset()
    return json_response({"reset": True})
