"""TF Serving over gRPC (the default TensorFlow transport): `PredictionService/Predict`.

Uses the gateway's own copies of TF Serving's messages (`gateway._proto.tfserving`), so
TensorFlow is never imported; tensors travel as `tensor_content` bytes both ways.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from gateway._proto.tfserving import (
    GET_MODEL_STATUS,
    PREDICT,
    GetModelStatusRequest,
    GetModelStatusResponse,
    PredictRequest,
    PredictResponse,
)
from gateway.codecs.tensorproto import TensorCodecError, from_tensor_map, to_tensor_map
from gateway.errors import GatewayError, UpstreamError
from gateway.types import Framework, InferRequest, InferResponse
from gateway.upstreams.calls import call_timeout, version_for
from gateway.upstreams.failures import Target, from_grpc, from_transport
from gateway.upstreams.grpc_channels import ChannelPool, Replica

AVAILABLE = 30  # tensorflow.serving.ModelVersionStatus.State.AVAILABLE


class TFServingGrpcUpstream:
    """TF Serving's gRPC API on every replica.

    Args:
        addresses: `host:port` of each replica's gRPC port.
        timeout_s: the longest any call may take (a caller's shorter deadline wins).
        unhealthy_for_s: how long a replica that failed to connect is skipped.
        default_versions: per model, the version reported when the backend omits it.
    """

    framework: Framework = "tensorflow"

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        timeout_s: float = 5.0,
        unhealthy_for_s: float = 2.0,
        default_versions: Mapping[str, int] | None = None,
    ) -> None:
        self.channels = ChannelPool(self.framework, addresses, unhealthy_for_s)
        self.timeout_s = timeout_s
        self.default_versions = dict(default_versions or {})

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        target = Target(self.framework, request.model, request.version, request.version_label)
        message = predict_request(request)
        metadata = (("x-request-id", request.request_id),)

        async def attempt(replica: Replica, left: float) -> Any:
            method = replica.unary(
                PREDICT, PredictRequest.SerializeToString, PredictResponse.FromString
            )
            return await grpc_call(method, message, left, target, metadata)

        started = time.perf_counter()
        reply = await self.channels.get().call(attempt, call_timeout(timeout, self.timeout_s))
        elapsed = time.perf_counter() - started
        return InferResponse(
            model=request.model,
            version=int(reply.model_spec.version.value)
            or version_for(request, self.default_versions),
            backend=self.framework,
            outputs=_outputs(reply, target),
            request_id=request.request_id,
            timings={"upstream": elapsed},
        )

    def _version(self, request: InferRequest) -> int:
        return version_for(request, self.default_versions)

    async def ready(self, model: str) -> bool:
        """True when some replica reports a version of `model` AVAILABLE."""
        message = GetModelStatusRequest()
        message.model_spec.name = model
        target = Target(self.framework, model)
        for replica in self.channels.get().replicas:
            method = replica.unary(
                GET_MODEL_STATUS,
                GetModelStatusRequest.SerializeToString,
                GetModelStatusResponse.FromString,
            )
            try:
                status = await grpc_call(method, message, self.timeout_s, target)
            except GatewayError:  # any failure means "not ready on this replica"
                continue
            if any(v.state == AVAILABLE for v in status.model_version_status):
                return True
        return False

    async def aclose(self) -> None:
        await self.channels.aclose()


def predict_request(request: InferRequest) -> Any:
    """The `PredictRequest` for an `InferRequest` (model spec, inputs, output filter)."""
    message = PredictRequest()
    spec = message.model_spec
    spec.name = request.model
    if request.version is not None:
        spec.version.value = request.version
    elif request.version_label:
        spec.version_label = request.version_label
    signature = request.parameters.get("signature_name")
    if signature:
        spec.signature_name = str(signature)
    to_tensor_map(request.inputs, message.inputs)
    message.output_filter.extend(request.outputs)
    return message


async def grpc_call(
    method: grpc.aio.UnaryUnaryMultiCallable,
    message: Any,
    timeout: float,
    target: Target,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Any:
    """The error boundary of every gRPC call (used by both gRPC clients)."""
    try:
        return await method(message, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        raise from_grpc(exc, target) from exc
    except (TimeoutError, OSError) as exc:
        raise from_transport(exc, target) from exc


def _outputs(reply: Any, target: Target) -> dict[str, Any]:
    try:
        return from_tensor_map(reply.outputs)
    except TensorCodecError as exc:
        raise UpstreamError(target.backend, f"{target}: unreadable output tensor ({exc})") from exc
