"""Open Inference Protocol v2 REST (KServe v2 / Triton) on the gateway."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.catalog import ModelInfo
from gateway.context import GatewayContext
from gateway.errors import BadRequest
from gateway.protocols.http import (
    HEADER_ROUTING_KEY,
    begin,
    json_body,
    json_response,
    pinned_backend,
)
from gateway.protocols.v2_json import datatype_of, decode_infer, encode_infer
from gateway.types import InferRequest

router = APIRouter()
PROTOCOL = "v2-rest"


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive integer, got '{text}'")
    return int(text)


@router.get("/v2/health/live")
async def live() -> Response:
    return json_response({"live": True})


@router.get("/v2/health/ready")
async def ready(request: Request) -> Response:
    ok = await request.app.state.readiness()
    return json_response({"ready": ok}, status=200 if ok else 503)


@router.get("/v2")
async def server_metadata() -> Response:
    return json_response({"name": "dualserve", "version": "0.1.0", "extensions": []})


def _metadata(info: ModelInfo) -> dict[str, object]:
    def spec(tensors: tuple) -> list[dict[str, object]]:  # type: ignore[type-arg]
        return [
            {"name": t.name, "datatype": datatype_of(t.dtype), "shape": list(t.shape)}
            for t in tensors
        ]

    return {
        "name": info.name,
        "versions": [str(v) for v in sorted(info.versions)],
        "platform": "dualserve (tensorflow | pytorch)",
        "inputs": spec(info.inputs),
        "outputs": spec(info.outputs),
    }


@router.get("/v2/models/{model}")
@router.get("/v2/models/{model}/versions/{version}")
async def model_metadata(request: Request, model: str, version: str | None = None) -> Response:
    info = _ctx(request).catalog.get(model)
    info.resolve_version(_version(version), None)
    return json_response(_metadata(info))


@router.get("/v2/models/{model}/ready")
@router.get("/v2/models/{model}/versions/{version}/ready")
async def model_ready(request: Request, model: str, version: str | None = None) -> Response:
    ctx = _ctx(request)
    ctx.catalog.get(model).resolve_version(_version(version), None)
    ok = any((await ctx.router.ready(model)).values())
    return json_response({"name": model, "ready": ok}, status=200 if ok else 503)


async def infer(request: Request) -> Response:
    """A plain Starlette endpoint, like TF Serving's predict routes (no FastAPI DI cost)."""
    model, version = request.path_params["model"], request.path_params.get("version")
    ctx = _ctx(request)
    rid = begin(request, PROTOCOL)
    ctx.auth.check_predict(request.headers)
    body = await json_body(request, ctx.settings.max_body_bytes, non_finite=True)
    tensors, outputs, parameters = decode_infer(body)
    if isinstance(body.get("id"), str) and body["id"]:
        rid = request.state.request_id = request.headers.get("X-Request-Id") or body["id"]
    answer = await ctx.dataplane.infer(
        InferRequest(
            model=model,
            inputs=tensors,
            version=_version(version),
            outputs=outputs,
            request_id=rid,
            routing_key=request.headers.get(HEADER_ROUTING_KEY),
            pinned=pinned_backend(request),
            parameters=parameters,
        ),
        PROTOCOL,
        strict_dtype=True,
    )
    return json_response(encode_infer(model, answer.version, rid, answer.outputs), answer)


router.add_route("/v2/models/{model}/infer", infer, methods=["POST"])
router.add_route("/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"])
