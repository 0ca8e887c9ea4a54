"""Open Inference Protocol gRPC (`inference.GRPCInferenceService`, KServe v2 / Triton) on
the gateway, so `tritonclient.grpc` works unchanged.

Mirrors the v2 REST ingress: the same catalog checks (unknown model or version is
NOT_FOUND), strict dtypes, and the same request id rule: the response's `id` is the
request's `id` (Open Inference Protocol, "Inference Response": "the identifier given in the
request, if any"); `x-request-id` metadata is echoed in the trailing metadata, and when it
is absent the request `id` (or a new one) names the call there and in the prediction log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from gateway._proto import oip
from gateway.catalog import ModelInfo, TensorInfo
from gateway.codecs.oip_raw import datatype_of
from gateway.context import GatewayContext
from gateway.core.errors import NotFound
from gateway.protocols import classification, model_repository
from gateway.protocols.grpc.oip_extensions import extension_methods
from gateway.protocols.grpc.oip_stream import stream_handler
from gateway.protocols.grpc.common import Boundary, Call, positive_version
from gateway.protocols.grpc.oip_tensors import decode_inputs, encode_outputs, parameters
from gateway.core.types import InferRequest

PROTOCOL = "v2-grpc"
EXTENSIONS = [
    classification.EXTENSION,
    model_repository.STATISTICS,
    model_repository.MODEL_CONFIGURATION,
]
"""Triton extensions served on gRPC (binary tensor data is a REST matter)."""
Readiness = Callable[[], Awaitable[bool]]


def decode_infer(request: Any, call: Call) -> tuple[InferRequest, bool]:
    """The `InferRequest` for a `ModelInferRequest`, and whether its inputs came raw."""
    inputs, raw = decode_inputs(request)
    if request.id and "x-request-id" not in call.headers:
        call.request_id = request.id
    infer = InferRequest(
        model=request.model_name,
        inputs=inputs,
        version=positive_version(request.model_version),
        outputs=[o.name for o in request.outputs],
        request_id=call.request_id,
        routing_key=call.routing_key,
        pinned=call.pinned(),
        deadline=call.deadline,
        parameters=parameters(request),
    )
    return infer, raw


def _tensor_metadata(target: Any, tensor: TensorInfo) -> None:
    target.add(name=tensor.name, datatype=datatype_of(tensor.dtype), shape=tensor.shape)


def model_metadata(info: ModelInfo) -> Any:
    response = oip.ModelMetadataResponse(
        name=info.name,
        versions=[str(v) for v in sorted(info.versions)],
        platform="dualserve (tensorflow | pytorch)",
    )
    for tensor in info.inputs:
        _tensor_metadata(response.inputs, tensor)
    for tensor in info.outputs:
        _tensor_metadata(response.outputs, tensor)
    return response


class OipServicer:
    """`GRPCInferenceService` on the shared data plane.

    Args:
        ctx: the gateway's shared objects.
        readiness: the gateway's readiness (every model has a ready arm), as /readyz.
    """

    def __init__(self, ctx: GatewayContext, readiness: Readiness) -> None:
        self.ctx = ctx
        self.readiness = readiness

    async def server_live(self, request: Any, call: Call) -> Any:
        return oip.ServerLiveResponse(live=True)

    async def server_ready(self, request: Any, call: Call) -> Any:
        return oip.ServerReadyResponse(ready=await self.readiness())

    async def server_metadata(self, request: Any, call: Call) -> Any:
        return oip.ServerMetadataResponse(name="dualserve", version="0.1.0", extensions=EXTENSIONS)

    async def model_ready(self, request: Any, call: Call) -> Any:
        """Ready when the model has a ready arm; an unknown model or version is `ready:
        false`, not an error, as Triton answers (`InferenceServer::ModelIsReady`), so
        tritonclient's `is_model_ready` returns False as it does over REST."""
        try:
            info = self.ctx.catalog.get(request.name)
            info.resolve_version(positive_version(request.version), None)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        ready = any((await self.ctx.router.ready(info.name)).values())
        return oip.ModelReadyResponse(ready=ready)

    async def model_metadata(self, request: Any, call: Call) -> Any:
        info = self.ctx.catalog.get(request.name)
        info.resolve_version(positive_version(request.version), None)
        return model_metadata(info)

    async def model_infer(self, request: Any, call: Call) -> Any:
        self.ctx.auth.check_predict(call.headers)
        infer, raw = decode_infer(request, call)
        call.check_request_id(self.ctx.settings.limits)
        counts = classification.grpc_counts(request)
        classification.check(self.ctx.catalog.get(infer.model), counts)
        answer = await self.ctx.dataplane.infer(infer, PROTOCOL, strict_dtype=True)
        response = oip.ModelInferResponse(
            model_name=answer.model, model_version=str(answer.version), id=request.id
        )
        outputs = classification.apply(answer.outputs, counts, as_bytes=True)
        encode_outputs(response, outputs, raw)
        call.answered(answer)
        return response


def handlers(ctx: GatewayContext, readiness: Readiness) -> list[grpc.GenericRpcHandler]:
    """One generic handler for `inference.GRPCInferenceService`."""
    servicer = OipServicer(ctx, readiness)
    boundary = Boundary(ctx, PROTOCOL)
    methods = {
        "ServerLive": boundary.unary(
            servicer.server_live, oip.ServerLiveRequest, oip.ServerLiveResponse
        ),
        "ServerReady": boundary.unary(
            servicer.server_ready, oip.ServerReadyRequest, oip.ServerReadyResponse
        ),
        "ServerMetadata": boundary.unary(
            servicer.server_metadata, oip.ServerMetadataRequest, oip.ServerMetadataResponse
        ),
        "ModelReady": boundary.unary(
            servicer.model_ready, oip.ModelReadyRequest, oip.ModelReadyResponse
        ),
        "ModelMetadata": boundary.unary(
            servicer.model_metadata, oip.ModelMetadataRequest, oip.ModelMetadataResponse
        ),
        "ModelInfer": boundary.unary(
            servicer.model_infer,
            oip.ModelInferRequest,
            oip.ModelInferResponse,
            lambda m: m.model_name,
        ),
        **extension_methods(ctx, boundary),  # ModelStatistics, ModelConfig, RepositoryIndex
        "ModelStreamInfer": stream_handler(ctx, decode_infer),
    }
    return [grpc.method_handlers_generic_handler(oip.SERVICE, methods)]
