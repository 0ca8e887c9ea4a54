"""TF Serving's REST API on the gateway: any TF Serving client can point here."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from backends import tfserving_json as codec
from gateway.catalog import SERVING_SIGNATURE, ModelInfo, TensorInfo
from gateway.context import GatewayContext
from gateway.errors import BadRequest
from gateway.protocols.http import (
    HEADER_ROUTING_KEY,
    begin,
    json_response,
    pinned_backend,
    read_body,
)
from gateway.types import InferRequest

router = APIRouter()
PROTOCOL = "tfserving-rest"


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive integer, got '{text}'")
    return int(text)


_bad_request = partial(codec.errors_as, BadRequest)
"""The shared codec's errors are the client's: 400 with the codec's (TF Serving's) text."""


async def _predict(
    request: Request, model: str, version: int | None, label: str | None
) -> Response:
    ctx = _ctx(request)
    rid = begin(request, PROTOCOL)
    ctx.auth.check_predict(request.headers)
    raw = await read_body(request, ctx.settings.max_body_bytes)
    with _bad_request():  # the body is checked before the model, as TF Serving does
        body = codec.parse_predict(codec.loads(raw))
    info = ctx.catalog.get(model)
    dtypes = {t.name: t.dtype for t in info.inputs}
    with _bad_request():
        values = codec.named_values(body, list(dtypes))
        tensors = {name: codec.to_array(v, name, dtypes.get(name)) for name, v in values.items()}
    infer = InferRequest(
        model=model,
        inputs=tensors,
        version=version,
        version_label=label,
        request_id=rid,
        routing_key=request.headers.get(HEADER_ROUTING_KEY),
        pinned=pinned_backend(request),
        parameters=body.parameters,
    )
    answer = await ctx.dataplane.infer(infer, PROTOCOL)
    with _bad_request():
        encoded = codec.encode_predict(answer.outputs, body.row_format)
    return json_response(encoded, answer)


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


router.add_route("/v1/models/{model}:predict", predict, methods=["POST"])
router.add_route("/v1/models/{model}/versions/{version}:predict", predict_version, methods=["POST"])
router.add_route("/v1/models/{model}/labels/{label}:predict", predict_label, methods=["POST"])


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


@router.get("/v1/models/{model}")
async def model_status(request: Request, model: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, list(info.versions)))


@router.get("/v1/models/{model}/versions/{version}")
async def version_status(request: Request, model: str, version: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, [info.resolve_version(_version(version), None)]))


@router.get("/v1/models/{model}/labels/{label}")
async def label_status(request: Request, model: str, label: str) -> Response:
    info = _ctx(request).catalog.get(model)
    return json_response(_status(info, [info.resolve_version(None, label)]))


def _tensor_info(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "dtype": codec.TF_DTYPES.get(tensor.dtype.name, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in tensor.shape],
            "unknown_rank": False,
        },
        "name": tensor.name,
    }


@router.get("/v1/models/{model}/metadata")
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
