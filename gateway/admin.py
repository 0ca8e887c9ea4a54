"""The admin API: read statistics, override a model's routing policy, run experiments."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gateway.context import GatewayContext
from gateway.core.errors import BadRequest
from gateway.protocols.rest.http import json_body, json_response
from gateway.protocols.rest.openapi import operation, ref
from gateway.protocols.rest.schemas import ExperimentChange, Promotion, SplitChange
from gateway.settings import ExperimentSpec, ModelPolicy

router = APIRouter(prefix="/admin")
# Every field of a policy has a default, so its schema doubles as "the fields to change".
_POLICY_CHANGE = operation(ModelPolicy, body={"application/json": ref(ModelPolicy)})
_TRANSITION = operation(body={"application/json": ref(ExperimentChange)}, statuses=(409, 503))
_SPLIT_CHANGE = operation(body={"application/json": ref(SplitChange)}, statuses=(409, 503))
_CREATED = {"description": "the experiment, as stored, and its `define` event"}
_CREATE = operation(
    body={"application/json": ref(ExperimentSpec)}, statuses=(409, 503), extra={201: _CREATED}
)


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    ctx.auth.check_admin(request.headers)
    return ctx


@router.get("/models")
async def list_policies(request: Request) -> Response:
    """Every model's effective policy."""
    ctx = _ctx(request)
    policies = ctx.policies
    return json_response({m: policies.effective(m).model_dump() for m in policies.models})


@router.get("/models/{model}/policy", **operation(ModelPolicy))
async def get_policy(request: Request, model: str) -> Response:
    """`{"model", "effective", "source", "layers": {configured, experiment, override}}`;
    each layer present is `{policy, set_by, set_at, reason}`, an absent one null."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    return json_response({"model": model, **ctx.policies.describe(model)})


@router.put("/models/{model}/policy", **_POLICY_CHANGE)
@router.patch("/models/{model}/policy", **_POLICY_CHANGE)
async def set_override(request: Request, model: str) -> Response:
    """Set the admin override: the given fields merged into the effective policy.

    Body `{"policy": {fields}, "reason": "...", "set_by": "..."}`; the older shape, the
    policy fields at the top level (with an optional `"reason"`), is accepted too."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    body = await json_body(request, ctx.settings.max_body_bytes)
    changes, reason, set_by = _override_body(body)
    merged = {**ctx.policies.effective(model).model_dump(), **changes}
    try:
        policy = ModelPolicy.model_validate(merged)
    except ValidationError as exc:
        raise _invalid(exc, "policy") from None
    ctx.catalog.get(model).check_arm_versions(policy.arm_versions)
    ctx.catalog.get(model).check_arms(policy.arms)
    await ctx.policies.set_layer(model, "override", policy, set_by, reason)
    return json_response({"model": model, **ctx.policies.describe(model)})


@router.delete("/models/{model}/policy")
async def clear_override(request: Request, model: str) -> Response:
    """Remove the admin override: the experiment's (or the configured) policy rules again."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    await ctx.policies.clear_layer(model, "override")
    return json_response({"model": model, **ctx.policies.describe(model)})


@router.post("/models/{model}/promote", **operation(body={"application/json": ref(Promotion)},
                                                    statuses=(409, 503)))  # fmt: skip
async def promote(request: Request, model: str) -> Response:
    """Make an arm the model's default (`gateway.experiments.promote`): body
    `{"arm": "tf-v2", "reason": "...", "set_by": "...", "force": false}`. 409 while an
    experiment on the model runs (unless its rollout brought this arm to 100%, or
    `force`); 400 naming the known arms for an unknown one."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    body = await json_body(request, ctx.settings.max_body_bytes)
    try:
        change = Promotion.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc, "promotion") from None
    promoted = await ctx.experiments.promote(
        model, change.arm, change.reason, change.set_by, change.force
    )
    return json_response({**promoted, **ctx.policies.describe(model)})


@router.get("/models/{model}/events", **operation(statuses=(503,)))
async def model_events(request: Request, model: str) -> Response:
    """The model's promotions and retirements, oldest first."""
    ctx = _ctx(request)
    ctx.catalog.get(model)
    return json_response({"model": model, "events": await ctx.experiments.model_events(model)})


def _invalid(exc: ValidationError, name: str) -> BadRequest:
    """400 naming the first bad field (dotted path) and what is wrong with it."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or name
    return BadRequest(f"{where}: {first['msg']}")


def _override_body(body: Any) -> tuple[dict[str, Any], str, str]:
    """(policy fields, reason, set_by) from either body shape; 400 naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("policy update must be a JSON object")
    fields = dict(body)
    reason, set_by = fields.pop("reason", ""), fields.pop("set_by", "admin API")
    for name, value in (("reason", reason), ("set_by", set_by)):
        if not isinstance(value, str):
            raise BadRequest(f"{name}: must be a string")
    if "policy" in fields:
        changes = fields.pop("policy")
        if fields:
            raise BadRequest(f"{next(iter(fields))}: give policy fields inside 'policy'")
        if not isinstance(changes, dict):
            raise BadRequest("policy: must be an object of policy fields")
    else:
        changes = fields
    unknown = sorted(set(changes) - set(ModelPolicy.model_fields))
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a policy field")
    return changes, reason, set_by


def experiments_snapshot(ctx: GatewayContext) -> dict[str, Any]:
    """Per-model effective policy, plus THIS process's live statistics and breakers."""
    stats = ctx.stats.snapshot()
    models = {
        model: {
            "policy": ctx.policies.effective(model).model_dump(),
            "policy_source": ctx.policies.route(model).layer,
            **stats.get(model, {"arms": {}}),
        }
        for model in ctx.policies.models
    }
    breakers = {arm: b.state.name.lower() for arm, b in ctx.router.breakers.items()}
    scope = {
        "models": f"arm and shadow figures of this process (pid {os.getpid()})",
        "breakers": f"this process (pid {os.getpid()})",
        "experiments": "every process (from the prediction log)",
    }
    return {"models": models, "breakers": breakers, "scope": scope}


@router.get("/experiments")
async def experiments(request: Request) -> Response:
    """Per-model policies and this process's statistics, plus every experiment with its
    live per-arm figures over every process."""
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


@router.post("/experiments", status_code=201, **_CREATE)
async def create_experiment(request: Request) -> Response:
    """Define an experiment at run time from a spec (the YAML's `ExperimentSpec`); it is
    stored, and starts at once when due and its model runs no other experiment."""
    ctx = _ctx(request)
    body = await json_body(request, ctx.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequest("experiment: must be a JSON object (an ExperimentSpec)")
    try:
        spec = ExperimentSpec.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc, "experiment") from None
    created = await ctx.experiments.create(spec, "created through the admin API")
    return json_response(created, status=201)


@router.get("/experiments/{experiment}", **operation(statuses=(400, 503)))
async def experiment_analysis(request: Request, experiment: str) -> Response:
    """The full analysis: per-arm figures with intervals, tests, verdict, events.

    Fresh by default: an analysis that began after the request came (within the
    analyst's budget, `experiments.analysis_budget`). `Cache-Control: max-age=N` (RFC 9111
    5.2.1.1) accepts the latest analysis up to N seconds old instead, at once. The answer's
    `Age` header gives the analysis's age in seconds (RFC 9111 5.1)."""
    ctx = _ctx(request)
    max_age = max_age_of(request.headers.get("cache-control"))
    result = await ctx.experiments.analysis(experiment, max_age_s=max_age)
    response = json_response(result)
    at = ctx.experiments.analysed_at(experiment)
    age = 0 if at is None else max(0, int(time.time() - at))
    response.headers["age"] = str(age)
    return response


def max_age_of(cache_control: str | None) -> float | None:
    """The `max-age` of a `Cache-Control` request header (seconds; `no-cache`: 0), else
    None (RFC 9111 5.2.1).

    Raises:
        BadRequest: `max-age` is not a non-negative integer (400).
    """
    if not cache_control:
        return None
    max_age: float | None = None
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name == "no-cache":
            return 0.0
        if name == "max-age":
            value = value.strip().strip('"')
            if not value.isdigit():
                raise BadRequest(
                    f"Cache-Control: max-age must be a non-negative integer, not {value!r}"
                )
            max_age = float(value)
    return max_age


@router.post("/experiments/{experiment}/{action}", **_TRANSITION)
async def experiment_action(request: Request, experiment: str, action: str) -> Response:
    """`start` (or resume), `pause`, `end`; body `{"reason": "..."}`, recorded as an event."""
    ctx = _ctx(request)
    body = await _change(request, ctx)
    return json_response(await ctx.experiments.transition(experiment, action, body["reason"]))


@router.patch("/experiments/{experiment}", **_SPLIT_CHANGE)
async def experiment_split(request: Request, experiment: str) -> Response:
    """Change the split: `{"split": {"tensorflow": 90, "pytorch": 10}, "reason": "..."}`
    (keys are the experiment's arm names)."""
    ctx = _ctx(request)
    body = await _change(request, ctx)
    split = body.get("split")
    if not isinstance(split, dict):
        raise BadRequest("split: must be an object of arm name -> share")
    return json_response(await ctx.experiments.change_split(experiment, split, body["reason"]))


@router.post("/experiments/reset")
async def reset(request: Request) -> Response:
    ctx = _ctx(request)
    ctx.stats.reset()
    return json_response({"reset": True})
