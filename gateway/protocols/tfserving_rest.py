"""TF Serving's REST API on the gateway: any TF Serving client can point here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway import deadline
from gateway.catalog import SERVING_SIGNATURE, ModelInfo, TensorInfo
from gateway.context import GatewayContext
from gateway.errors import BadRequest
from gateway.openapi import (
    ANSWER_HEADERS,
    PREDICTION_ERRORS,
    PREDICTION_HEADERS,
    operation,
    ref,
)
from gateway.protocols.http import (
    HEADER_ROUTING_KEY,
    begin,
    json_body,
    json_response,
    pinned_backend,
)
from gateway.protocols.schemas import (
    ModelStatusResponse,
    PredictRequest,
    PredictResponse,
    TfModelMetadataResponse,
)
from gateway.protocols.tfserving_json import decode_predict, encode_predict
from gateway.types import InferRequest

router = APIRouter()
PROTOCOL = "tfserving-rest"
_TF_DTYPES = {
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int64": "DT_INT64",
    "int32": "DT_INT32",
}


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive integer, got '{text}'")
    return int(text)


async def _predict(
    request: Request, model: str, version: int | None, label: str | None
) -> Response:
    ctx = _ctx(request)
    rid = begin(request, PROTOCOL)
    ctx.auth.check_predict(request.headers)
    body = await json_body(request, ctx.settings.max_body_bytes)
    info = ctx.catalog.get(model)
    tensors, fmt = decode_predict(body, [t.name for t in info.inputs])
    infer = InferRequest(
        model=model,
        inputs=tensors,
        version=version,
        version_label=label,
        request_id=rid,
        routing_key=request.headers.get(HEADER_ROUTING_KEY),
        pinned=pinned_backend(request),
        deadline=deadline.from_headers(request.headers),
        parameters={k: v for k, v in body.items() if k not in ("instances", "inputs")},
    )
    answer = await ctx.dataplane.infer(infer, PROTOCOL)
    return json_response(encode_predict(answer.outputs, fmt), answer)


# The predict routes are plain Starlette endpoints: FastAPI's dependency machinery costs
# a measurable share of the gateway's CPU per request, and these need none of it.
async def predict(request: Request) -> Response:
    return await _predict(request, request.path_params["model"], None, None)


async def predict_version(request: Request) -> Response:
    params = request.path_params
    return await _predict(request, params["model"], _version(params["version"]), None)


async def predict_label(request: Request) -> Response:
    params = request.path_params
    return await _predict(request, params["model"], None, params["label"])


_PREDICT = operation(
    PredictResponse,
    body={"application/json": ref(PredictRequest)},
    statuses=PREDICTION_ERRORS,
    headers=PREDICTION_HEADERS,
    answer_headers=ANSWER_HEADERS,
)
router.add_api_route("/v1/models/{model}:predict", predict, methods=["POST"], **_PREDICT)
router.add_api_route(
    "/v1/models/{model}/versions/{version}:predict", predict_version, methods=["POST"], **_PREDICT
)
router.add_api_route(
    "/v1/models/{model}/labels/{label}:predict", predict_label, methods=["POST"], **_PREDICT
)


def _status(info: ModelInfo, versions: list[int]) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(v),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in sorted(versions, reverse=True)
        ]
    }


@router.get("/v1/models/{model}", **operation(ModelStatusResponse))
async def model_status(request: Request, model: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, list(info.versions)))


@router.get("/v1/models/{model}/versions/{version}", **operation(ModelStatusResponse))
async def version_status(request: Request, model: str, version: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, [info.resolve_version(_version(version), None)]))


@router.get("/v1/models/{model}/labels/{label}", **operation(ModelStatusResponse))
async def label_status(request: Request, model: str, label: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, [info.resolve_version(None, label)]))


def _tensor_info(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "dtype": _TF_DTYPES.get(tensor.dtype.name, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in tensor.shape],
            "unknown_rank": False,
        },
        "name": tensor.name,
    }


@router.get("/v1/models/{model}/metadata", **operation(TfModelMetadataResponse))
async def metadata(request: Request, model: str) -> Response:
    info = _ctx(request).catalog.get(model)
    signature = {
        "inputs": {t.name: _tensor_info(t) for t in info.inputs},
        "outputs": {t.name: _tensor_info(t) for t in info.outputs},
        "method_name": "tensorflow/serving/predict",
    }
    return json_response(
        {
            "model_spec": {"name": model, "signature_name": "", "version": str(info.latest)},
            "metadata": {"signature_def": {"signature_def": {SERVING_SIGNATURE: signature}}},
        }
    )
