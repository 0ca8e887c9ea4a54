"""Open Inference Protocol v2 REST (KServe v2 / Triton) on the gateway."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.context import GatewayContext
from gateway.core.types import InferRequest
from gateway.core.version import parse_version
from gateway.edge import deadline
from gateway.edge.limits import check_request_id
from gateway.protocols import classification, model_repository
from gateway.protocols.rest.front_door import trace_of
from gateway.protocols.rest.http import (
    HEADER_REQUEST_ID,
    HEADER_ROUTING_KEY,
    begin,
    json_response,
    parse_json,
    pinned_arm,
    pinned_backend,
    read_body,
)
from gateway.protocols.rest.openapi import (
    ANSWER_HEADERS,
    PREDICTION_ERRORS,
    PREDICTION_HEADERS,
    operation,
    ref,
)
from gateway.protocols.rest.schemas import (
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadataResponse,
)
from gateway.protocols.rest.v2_binary import (
    EXTENSION,
    HEADER_LENGTH,
    encode_response,
    split_body,
    with_buffers,
)
from gateway.protocols.rest.v2_json import decode_infer

router = APIRouter()
PROTOCOL = "v2-rest"
EXTENSIONS = [
    EXTENSION,
    classification.EXTENSION,
    model_repository.STATISTICS,
    model_repository.MODEL_CONFIGURATION,
]
"""Triton extensions served (server metadata `extensions`), each only once it works."""
_READY = operation(ReadyResponse, extra={503: {"model": ReadyResponse, "description": "not ready"}})
_MODEL_READY = operation(
    ModelReadyResponse, extra={503: {"model": ModelReadyResponse, "description": "no ready arm"}}
)
_LENGTH_PARAMETER = {
    "name": HEADER_LENGTH,
    "in": "header",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "description": "length of the JSON object when binary tensor data follows it",
}


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


@router.get("/v2/health/live", **operation(LiveResponse))
async def live(request: Request) -> Response:
    return json_response({"live": _ctx(request).dataplane.live()})


@router.get("/v2/health/ready", **_READY)
async def ready(request: Request) -> Response:
    ok = await _ctx(request).dataplane.ready()
    return json_response({"ready": ok}, status=200 if ok else 503)


@router.get("/v2", **operation(ServerMetadataResponse))
async def server_metadata(request: Request) -> Response:
    metadata = _ctx(request).dataplane.metadata()
    body = {"name": metadata.name, "version": metadata.version, "extensions": EXTENSIONS}
    return json_response(body)


@router.get("/v2/models/{model}", **operation(ModelMetadataResponse))
@router.get("/v2/models/{model}/versions/{version}", **operation(ModelMetadataResponse))
async def model_metadata(request: Request, model: str, version: str | None = None) -> Response:
    return json_response(_ctx(request).dataplane.model_metadata(model, version).oip())


@router.get("/v2/models/{model}/ready", **_MODEL_READY)
@router.get("/v2/models/{model}/versions/{version}/ready", **_MODEL_READY)
async def model_ready(request: Request, model: str, version: str | None = None) -> Response:
    ok = await _ctx(request).dataplane.model_ready(model, version)
    return json_response({"name": model, "ready": ok}, status=200 if ok else 503)


async def infer(request: Request) -> Response:
    """`POST /v2/models/{m}[/versions/{v}]/infer`: JSON, or JSON and binary tensor data.

    Served on the fast path (the endpoint takes only the request). The body's `id` comes
    back in the body; `X-Request-Id` comes back as a header and, when sent, names the
    request in the prediction log (else the body's `id` does). An unknown model is 404
    before the body is read, as Triton looks the model up first."""
    model, version = request.path_params["model"], request.path_params.get("version")
    ctx = _ctx(request)
    rid = begin(request, PROTOCOL)
    ctx.auth.check_predict(request.headers)
    info = ctx.catalog.get(model)  # as Triton: an unknown model is 404 whatever the body
    raw = await read_body(request, ctx.settings.max_body_bytes)
    head, binary = split_body(raw, request.headers.get(HEADER_LENGTH))
    decoded = decode_infer(parse_json(head, ctx.settings.limits, non_finite=True), binary)
    classification.check(info, decoded.classification)
    if decoded.id:
        check_request_id(decoded.id, ctx.settings.limits, "the body's id")
    if decoded.id and HEADER_REQUEST_ID not in request.headers:
        rid = request.state.request_id = decoded.id
    answer = await ctx.dataplane.infer(
        InferRequest(
            model=model,
            inputs=decoded.inputs,
            version=parse_version(version),
            outputs=decoded.outputs,
            request_id=rid,
            routing_key=request.headers.get(HEADER_ROUTING_KEY),
            pinned=pinned_backend(request),
            pinned_arm=pinned_arm(request),
            parameters=decoded.parameters,
            deadline=deadline.from_headers(request.headers),
            trace=trace_of(request),
        ),
        PROTOCOL,
        strict_dtype=True,
    )
    outputs = classification.apply(answer.outputs, decoded.classification)
    body, buffers = encode_response(model, answer.version, decoded, outputs)
    return with_buffers(json_response(body, answer), buffers)


_BINARY = {
    "type": "string",
    "format": "binary",
    "description": "the JSON object, then binary tensor data",
}
_INFER = operation(
    InferenceResponse,
    body={"application/json": ref(InferenceRequest), "application/octet-stream": _BINARY},
    statuses=PREDICTION_ERRORS,
    headers=[*PREDICTION_HEADERS, _LENGTH_PARAMETER],
    answer_headers=ANSWER_HEADERS,
    extra={200: {"content": {"application/octet-stream": {"schema": _BINARY}}}},
)
router.add_api_route("/v2/models/{model}/infer", infer, methods=["POST"], **_INFER)
router.add_api_route(
    "/v2/models/{model}/versions/{version}/infer", infer, methods=["POST"], **_INFER
)
