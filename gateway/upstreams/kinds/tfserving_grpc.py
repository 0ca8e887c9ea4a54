"""TF Serving over gRPC: `PredictionService/Predict`, readiness by `ModelService/GetModelStatus`.

Uses the gateway's own copies of TF Serving's messages (`gateway._proto.tfserving`), so
TensorFlow is never imported; tensors travel as `tensor_content` bytes both ways.
"""

from __future__ import annotations

from typing import Any

from gateway._proto.tfserving import (
    GET_MODEL_STATUS,
    PREDICT,
    GetModelStatusRequest,
    GetModelStatusResponse,
    PredictRequest,
    PredictResponse,
)
from gateway.codecs.tensorproto import TensorCodecError, from_tensor_map, to_tensor_map
from gateway.core.errors import UpstreamError
from gateway.core.types import Framework, InferRequest
from gateway.upstreams.failures import Target
from gateway.upstreams.transports.grpc_channels import GrpcCall
from gateway.upstreams.pooled import Decoded

AVAILABLE = 30  # tensorflow.serving.ModelVersionStatus.State.AVAILABLE


class TFServingGrpc:
    """TF Serving's gRPC messages (a `Codec` for `PooledUpstream` over `GrpcWire`)."""

    framework: Framework = "tensorflow"

    def encode(self, request: InferRequest) -> GrpcCall:
        metadata = (("x-request-id", request.request_id),)
        return GrpcCall(
            PREDICT,
            PredictRequest.SerializeToString,
            PredictResponse.FromString,
            predict_request(request),
            metadata,
        )

    def decode(self, answer: Any, request: InferRequest, target: Target) -> Decoded:
        try:
            outputs = from_tensor_map(answer.outputs)
        except TensorCodecError as exc:
            detail = f"{target}: unreadable output tensor ({exc})"
            raise UpstreamError(target.backend, detail) from exc
        return Decoded(outputs, int(answer.model_spec.version.value) or None)

    def probe(self, model: str) -> GrpcCall:
        message = GetModelStatusRequest()
        message.model_spec.name = model
        return GrpcCall(
            GET_MODEL_STATUS,
            GetModelStatusRequest.SerializeToString,
            GetModelStatusResponse.FromString,
            message,
        )

    def is_ready(self, answer: Any) -> bool:
        """Some version of the model is AVAILABLE."""
        return any(v.state == AVAILABLE for v in answer.model_version_status)


def predict_request(request: InferRequest) -> Any:
    """The `PredictRequest` for an `InferRequest` (model spec, inputs, output filter)."""
    message = PredictRequest()
    spec = message.model_spec
    spec.name = request.model
    if request.version is not None:
        spec.version.value = request.version
    signature = request.parameters.get("signature_name")
    if signature:
        spec.signature_name = str(signature)
    to_tensor_map(request.inputs, message.inputs)
    message.output_filter.extend(request.outputs)
    return message
