"""The admin API: read statistics, change a model's routing policy at run time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gateway.context import GatewayContext
from gateway.errors import BadRequest
from gateway.openapi import inline, operation, ref
from gateway.protocols.http import json_body, json_response
from gateway.protocols.schemas import ExperimentChange, SplitChange
from gateway.settings import ModelPolicy

if TYPE_CHECKING:
    pass

router = APIRouter(prefix="/admin")
# Every field of a policy has a default, so its schema doubles as "the fields to change".
_POLICY_CHANGE = operation(ModelPolicy, body={"application/json": inline(ModelPolicy)})
_TRANSITION = operation(body={"application/json": ref(ExperimentChange)}, statuses=(409, 503))
_SPLIT_CHANGE = operation(body={"application/json": ref(SplitChange)}, statuses=(409, 503))


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    ctx.auth.check_admin(request.headers)
    return ctx


@router.get("/models")
async def list_policies(request: Request) -> Response:
    ctx = _ctx(request)
    return json_response({m: p.model_dump() for m, p in sorted(ctx.router.policies.items())})


@router.get("/models/{model}/policy", **operation(ModelPolicy))
async def get_policy(request: Request, model: str) -> Response:
    ctx = _ctx(request)
    ctx.catalog.get(model)
    return json_response(ctx.router.policies[model].model_dump())


@router.put("/models/{model}/policy", **_POLICY_CHANGE)
@router.patch("/models/{model}/policy", **_POLICY_CHANGE)
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
    """Per-model live statistics, plus every experiment with its live per-arm figures."""
    ctx = _ctx(request)
    snapshot = experiments_snapshot(ctx)
    snapshot["experiments"] = await ctx.experiments.summaries()
    snapshot["prediction_log"] = ctx.experiments.log_counters()
    return json_response(snapshot)


async def _change(request: Request, ctx: GatewayContext) -> dict[str, Any]:
    body = await json_body(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("reason"), str):
        raise BadRequest("reason: every experiment change needs a reason (a string)")
    return body


@router.get("/experiments/{experiment}", **operation(statuses=(503,)))
async def experiment_analysis(request: Request, experiment: str) -> Response:
    """The full analysis: per-arm figures with intervals, tests, verdict, events."""
    ctx = _ctx(request)
    return json_response(await ctx.experiments.analysis(experiment))


@router.post("/experiments/{experiment}/{action}", **_TRANSITION)
async def experiment_action(request: Request, experiment: str, action: str) -> Response:
    """`start` (or resume), `pause`, `end`; body `{"reason": "..."}`, recorded as an event."""
    ctx = _ctx(request)
    body = await _change(request, ctx)
    return json_response(await ctx.experiments.transition(experiment, action, body["reason"]))


@router.patch("/experiments/{experiment}", **_SPLIT_CHANGE)
async def experiment_split(request: Request, experiment: str) -> Response:
    """Change the split: `{"split": {"tensorflow": 90, "pytorch": 10}, "reason": "..."}`."""
    ctx = _ctx(request)
    body = await _change(request, ctx)
    split = body.get("split")
    if not isinstance(split, dict):
        raise BadRequest("split: must be an object of framework -> share")
    return json_response(await ctx.experiments.change_split(experiment, split, body["reason"]))


@router.post("/experiments/reset")
async def reset(request: Request) -> Response:
    ctx = _ctx(request)
    ctx.router.stats.reset()
    return json_response({"reset": True})
