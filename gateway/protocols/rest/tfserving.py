"""TF Serving's REST API on the gateway: any TF Serving client can point here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.convertors import Convertor, register_url_convertor

from gateway.catalog import SERVING_SIGNATURE, TensorInfo
from gateway.context import GatewayContext
from gateway.core.errors import BadRequest
from gateway.core.types import InferRequest
from gateway.dataplane import ModelMetadata
from gateway.edge import deadline
from gateway.edge.limits import check_json_depth
from gateway.protocols import tf_texts
from gateway.protocols.rest.front_door import trace_of
from gateway.protocols.rest.http import (
    HEADER_ROUTING_KEY,
    begin,
    json_response,
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
    ModelStatusResponse,
    PredictRequest,
    PredictResponse,
    TfModelMetadataResponse,
)
from wire import tfserving_json as codec

router = APIRouter()
PROTOCOL = "tfserving-rest"


class _NameConvertor(Convertor[str]):
    """TF Serving's model names and labels, `[^/:]+`: so `GET /v1/models/m:predict` is
    the predict route asked with the wrong method (405, `Allow: POST`), not model 'm:predict'."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("tfname", _NameConvertor())


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.gateway  # type: ignore[no-any-return]


_bad_request = partial(codec.errors_as, BadRequest)
"""The shared codec's errors are the client's: 400 with the codec's (TF Serving's) text."""


async def _predict(
    request: Request, model: str, version: int | None, label: str | None
) -> Response:
    ctx = _ctx(request)
    rid = begin(request, PROTOCOL)
    ctx.auth.check_predict(request.headers)
    raw = await read_body(request, ctx.settings.max_body_bytes)
    check_json_depth(raw, ctx.settings.limits)
    with _bad_request():  # the body is checked before the model, as TF Serving does
        body = codec.parse_predict(codec.loads(raw))
        info = ctx.catalog.get(model)  # (its NotFound is no codec error: it passes as is)
        tf_texts.resolve(info, version, label)
        dtypes = {t.name: t.dtype for t in info.inputs}
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
        pinned_arm=pinned_arm(request),
        deadline=deadline.from_headers(request.headers),
        parameters=body.parameters,
        trace=trace_of(request),
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
    version = tf_texts.rest_version(request, params["version"])
    return await _predict(request, params["model"], version, None)


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
router.add_api_route("/v1/models/{model:tfname}:predict", predict, methods=["POST"], **_PREDICT)
router.add_api_route(
    "/v1/models/{model:tfname}/versions/{version}:predict",
    predict_version,
    methods=["POST"],
    **_PREDICT,
)
router.add_api_route(
    "/v1/models/{model:tfname}/labels/{label:tfname}:predict",
    predict_label,
    methods=["POST"],
    **_PREDICT,
)


def _signature_api(api: str) -> Callable[[Request], Awaitable[Response]]:
    """`:classify` / `:regress`: TF Serving's checks in its order (a JSON object body with
    `examples`, the model, version or label, then the signature's method). Both exports carry a
    predict signature only, so the answer is TF Serving's INVALID_ARGUMENT for it."""

    async def endpoint(request: Request) -> Response:
        ctx, params = _ctx(request), request.path_params
        begin(request, PROTOCOL)
        ctx.auth.check_predict(request.headers)
        raw = await read_body(request, ctx.settings.max_body_bytes)
        check_json_depth(raw, ctx.settings.limits)
        with _bad_request():
            codec.check_examples(codec.load_object(raw))
        info = ctx.catalog.get(params["model"])
        version = tf_texts.rest_version(request, params["version"]) if "version" in params else None
        tf_texts.resolve(info, version, params.get("label"))
        raise BadRequest(codec.wrong_method(api, codec.SIGNATURE_METHODS["predict"]))

    return endpoint


# TF Serving's classify/regress bodies: `{"signature_name"?, "context"?, "examples": [...]}`.
_SIGNATURE_API = operation(
    body={
        "application/json": {
            "type": "object",
            "required": ["examples"],
            "properties": {"examples": {"type": "array", "minItems": 1}},
        }
    },
    statuses=PREDICTION_ERRORS,
)
for _api in ("classify", "regress"):
    for _prefix in ("", "/versions/{version}", "/labels/{label:tfname}"):
        router.add_api_route(
            f"/v1/models/{{model:tfname}}{_prefix}:{_api}",
            _signature_api(_api),
            methods=["POST"],
            **_SIGNATURE_API,
        )


def _status(versions: list[int]) -> dict[str, Any]:
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


@router.get("/v1/models/{model:tfname}", **operation(ModelStatusResponse))
async def model_status(request: Request, model: str) -> Response:
    return json_response(_status(list(_ctx(request).dataplane.model_metadata(model).versions)))


@router.get("/v1/models/{model:tfname}/versions/{version}", **operation(ModelStatusResponse))
async def version_status(request: Request, model: str, version: str) -> Response:
    ctx = _ctx(request)
    tf_texts.resolve(
        ctx.catalog.get(model), tf_texts.rest_version(request, version), None, "status"
    )
    metadata = ctx.dataplane.model_metadata(model, version)
    return json_response(_status([metadata.version]))


@router.get("/v1/models/{model:tfname}/labels/{label:tfname}", **operation(ModelStatusResponse))
async def label_status(request: Request, model: str, label: str) -> Response:
    metadata = _ctx(request).dataplane.model_metadata(model, label=label)
    return json_response(_status([metadata.version]))


def _tensor_info(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "dtype": codec.TF_DTYPES.get(tensor.dtype.name, "DT_INVALID"),
        "tensor_shape": {
            "dim": [{"size": str(d), "name": ""} for d in tensor.shape],
            "unknown_rank": False,
        },
        "name": tensor.name,
    }


def _metadata(metadata: ModelMetadata) -> dict[str, Any]:
    signature = {
        "inputs": {t.name: _tensor_info(t) for t in metadata.inputs},
        "outputs": {t.name: _tensor_info(t) for t in metadata.outputs},
        "method_name": codec.SIGNATURE_METHODS["predict"],
    }
    return {
        "model_spec": {
            "name": metadata.name,
            "signature_name": "",
            "version": str(metadata.version),
        },
        "metadata": {"signature_def": {"signature_def": {SERVING_SIGNATURE: signature}}},
    }


@router.get("/v1/models/{model:tfname}/metadata", **operation(TfModelMetadataResponse))
async def metadata(request: Request, model: str) -> Response:
    return json_response(_metadata(_ctx(request).dataplane.model_metadata(model)))


@router.get(
    "/v1/models/{model:tfname}/versions/{version}/metadata", **operation(TfModelMetadataResponse)
)
async def version_metadata(request: Request, model: str, version: str) -> Response:
    ctx = _ctx(request)
    tf_texts.resolve(ctx.catalog.get(model), tf_texts.rest_version(request, version), None)
    return json_response(_metadata(ctx.dataplane.model_metadata(model, version)))


@router.get(
    "/v1/models/{model:tfname}/labels/{label:tfname}/metadata",
    **operation(TfModelMetadataResponse),
)
async def label_metadata(request: Request, model: str, label: str) -> Response:
    return json_response(_metadata(_ctx(request).dataplane.model_metadata(model, label=label)))
