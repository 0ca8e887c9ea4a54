"""TF Serving's gRPC API on the gateway: `PredictionService.Predict` / `GetModelMetadata`
and `ModelService.GetModelStatus`, so `tensorflow-serving-api` stubs work unchanged.

`model_spec` follows TF Serving: `version` or `version_label` (one of), `signature_name`
passed on to the backend ('' = serving_default); `output_filter` selects outputs.
"""

from __future__ import annotations

from typing import Any

import grpc

from gateway._proto.tfserving import (
    GetModelMetadataRequest,
    GetModelMetadataResponse,
    GetModelStatusRequest,
    GetModelStatusResponse,
    PredictRequest,
    PredictResponse,
    SignatureDefMap,
)
from gateway.catalog import SERVING_SIGNATURE, ModelInfo, TensorInfo
from gateway.codecs.tensorproto import (
    TensorCodecError,
    dtype_enum,
    from_tensor_proto,
    to_tensor_map,
)
from gateway.context import GatewayContext
from gateway.core.errors import BadRequest
from gateway.core.types import InferRequest
from gateway.dataplane import ModelMetadata
from gateway.protocols import tf_texts
from gateway.protocols.grpc.common import Boundary, Call
from gateway.protocols.grpc.tf_signature_apis import signature_api_methods

PROTOCOL = "tfserving-grpc"
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
AVAILABLE = 30  # tensorflow.serving.ModelVersionStatus.State.AVAILABLE


def version_choice(spec: Any) -> tuple[int | None, str | None]:
    """(version, label) from a ModelSpec's `version_choice` oneof."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def decode_inputs(request: Any) -> dict[str, Any]:
    """The request's TensorProtos as numpy arrays; a broken one is named."""
    inputs = {}
    for name, proto in request.inputs.items():
        try:
            inputs[name] = from_tensor_proto(proto)
        except TensorCodecError as exc:
            raise BadRequest(f"input '{name}': {exc}") from None
    return inputs


def output_filter(request: Any) -> list[str]:
    if not request.output_filter:
        return []
    names = list(request.output_filter)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadRequest(f"duplicate output tensor alias: {duplicates[0]}")
    return names


def decode_predict(request: Any, call: Call, info: ModelInfo) -> InferRequest:
    spec = request.model_spec
    version, label = version_choice(spec)
    tf_texts.resolve(info, version, label)
    tf_texts.check_output_filter(info, request.output_filter)
    signature = spec.signature_name
    return InferRequest(
        model=spec.name,
        inputs=decode_inputs(request),
        version=version,
        version_label=label,
        outputs=output_filter(request),
        request_id=call.request_id,
        routing_key=call.routing_key,
        pinned=call.pinned(),
        pinned_arm=call.pinned_arm(),
        deadline=call.deadline,
        parameters={"signature_name": signature} if signature else {},
        trace=call.trace,
    )


def fill_spec(spec: Any, model: str, version: int, signature: str) -> None:
    spec.name = model
    spec.version.value = version
    spec.signature_name = signature


def _tensor_info(target: Any, tensor: TensorInfo) -> None:
    target.name = tensor.name
    target.dtype = dtype_enum(tensor.dtype)
    for size in tensor.shape:
        target.tensor_shape.dim.add(size=size)


def signature_map(info: ModelMetadata) -> Any:
    """The model's `serving_default` signature, as TF Serving's metadata describes it."""
    signatures = SignatureDefMap()
    signature = signatures.signature_def[SERVING_SIGNATURE]
    signature.method_name = "tensorflow/serving/predict"
    for tensor in info.inputs:
        _tensor_info(signature.inputs[tensor.name], tensor)
    for tensor in info.outputs:
        _tensor_info(signature.outputs[tensor.name], tensor)
    return signatures


def check_metadata_fields(fields: list[str]) -> None:
    """TF Serving's rule: at least one field, and only `signature_def` is supported."""
    if not fields:
        raise BadRequest("GetModelMetadataRequest must specify at least one metadata_field")
    for field_name in fields:
        if field_name != "signature_def":
            raise BadRequest(f"Metadata field {field_name} is not supported")


class TFServingServicer:
    """The methods of both TF Serving services, on the shared data plane."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    async def predict(self, request: Any, call: Call) -> Any:
        self.ctx.auth.check_predict(call.headers)
        infer = decode_predict(request, call, self.ctx.catalog.get(request.model_spec.name))
        call.check_request_id(self.ctx.settings.limits)
        answer = await self.ctx.dataplane.infer(infer, PROTOCOL, strict_dtype=True)
        response = PredictResponse()
        signature = request.model_spec.signature_name or SERVING_SIGNATURE
        fill_spec(response.model_spec, answer.model, answer.version, signature)
        to_tensor_map(answer.outputs, response.outputs)
        call.answered(answer)
        return response

    async def metadata(self, request: Any, call: Call) -> Any:
        check_metadata_fields(list(request.metadata_field))
        spec = request.model_spec
        version, label = version_choice(spec)
        tf_texts.resolve(self.ctx.catalog.get(spec.name), version, label)  # TF Serving's words
        metadata = self.ctx.dataplane.model_metadata(spec.name, version, label)
        response = GetModelMetadataResponse()
        fill_spec(response.model_spec, metadata.name, metadata.version, "")
        response.metadata["signature_def"].Pack(signature_map(metadata))
        return response

    async def status(self, request: Any, call: Call) -> Any:
        version, label = version_choice(request.model_spec)
        name = request.model_spec.name
        if version is not None or label is not None:  # TF Serving's words for a missing one
            tf_texts.resolve(self.ctx.catalog.get(name), version, label, "status")
        metadata = self.ctx.dataplane.model_metadata(name, version, label)
        if version is None and label is None:
            versions = sorted(metadata.versions, reverse=True)
        else:
            versions = [metadata.version]
        response = GetModelStatusResponse()
        for number in versions:
            entry = response.model_version_status.add(version=number, state=AVAILABLE)
            entry.status.SetInParent()  # error_code OK, present as TF Serving sends it
        return response


def handlers(ctx: GatewayContext) -> list[grpc.GenericRpcHandler]:
    """Generic handlers for `PredictionService` and `ModelService`."""
    servicer = TFServingServicer(ctx)
    boundary = Boundary(ctx, PROTOCOL)
    predict = boundary.unary(
        servicer.predict,
        PredictRequest,
        PredictResponse,
        lambda m: m.model_spec.name,
        rpc=f"{PREDICTION_SERVICE}/Predict",
    )
    prediction = {
        "Predict": predict,
        "GetModelMetadata": boundary.unary(
            servicer.metadata, GetModelMetadataRequest, GetModelMetadataResponse
        ),
        **signature_api_methods(ctx, boundary),  # Classify, Regress, MultiInference
    }
    model = {
        "GetModelStatus": boundary.unary(
            servicer.status, GetModelStatusRequest, GetModelStatusResponse
        )
    }
    return [
        grpc.method_handlers_generic_handler(PREDICTION_SERVICE, prediction),
        grpc.method_handlers_generic_handler(MODEL_SERVICE, model),
    ]
