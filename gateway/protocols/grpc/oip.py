"""Open Inference Protocol gRPC (`inference.GRPCInferenceService`, KServe v2 / Triton) on
the gateway, so `tritonclient.grpc` works unchanged.

Mirrors the v2 REST ingress: the same catalog checks (unknown model or version is
NOT_FOUND), strict dtypes, and the same request id rule: the response's `id` is the
request's `id` (Open Inference Protocol, "Inference Response": "the identifier given in the
request, if any"); `x-request-id` metadata is echoed in the trailing metadata, and when it
is absent the request `id` (or a new one) names the call there and in the prediction log.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format

from gateway._proto import oip
from gateway.context import GatewayContext
from gateway.core.errors import NotFound
from gateway.core.types import InferRequest
from gateway.core.version import parse_version
from gateway.protocols import classification, model_repository
from gateway.protocols.grpc.common import Boundary, Call, unary_methods
from gateway.protocols.grpc.oip_extensions import extension_methods
from gateway.protocols.grpc.oip_stream import stream_handler
from gateway.protocols.grpc.oip_tensors import decode_inputs, encode_outputs, parameters

PROTOCOL = "v2-grpc"
EXTENSIONS = [
    classification.EXTENSION,
    model_repository.STATISTICS,
    model_repository.MODEL_CONFIGURATION,
]
"""Triton extensions served on gRPC (binary tensor data is a REST matter)."""


def decode_infer(request: Any, call: Call) -> tuple[InferRequest, bool]:
    """The `InferRequest` for a `ModelInferRequest`, and whether its inputs came raw."""
    inputs, raw = decode_inputs(request)
    if request.id and "x-request-id" not in call.headers:
        call.request_id = request.id
    infer = InferRequest(
        model=request.model_name,
        inputs=inputs,
        version=parse_version(request.model_version),
        outputs=[o.name for o in request.outputs],
        request_id=call.request_id,
        routing_key=call.routing_key,
        pinned=call.pinned(),
        pinned_arm=call.pinned_arm(),
        deadline=call.deadline,
        parameters=parameters(request),
        trace=call.trace,
    )
    return infer, raw


class OipServicer:
    """`GRPCInferenceService` on the shared data plane: each method translates.

    Args:
        ctx: the gateway's shared objects.
    """

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.dataplane = ctx.dataplane

    async def server_live(self, request: Any, call: Call) -> Any:
        return oip.ServerLiveResponse(live=self.dataplane.live())

    async def server_ready(self, request: Any, call: Call) -> Any:
        return oip.ServerReadyResponse(ready=await self.dataplane.ready())

    async def server_metadata(self, request: Any, call: Call) -> Any:
        metadata = self.dataplane.metadata()
        return oip.ServerMetadataResponse(
            name=metadata.name, version=metadata.version, extensions=EXTENSIONS
        )

    async def model_ready(self, request: Any, call: Call) -> Any:
        """Ready when the model has a ready arm; an unknown model or version is `ready:
        false`, not an error, as Triton answers (`InferenceServer::ModelIsReady`), so
        tritonclient's `is_model_ready` returns False as it does over REST."""
        try:
            ready = await self.dataplane.model_ready(request.name, request.version)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=ready)

    async def model_metadata(self, request: Any, call: Call) -> Any:
        metadata = self.dataplane.model_metadata(request.name, request.version)
        return json_format.ParseDict(metadata.oip(), oip.ModelMetadataResponse())

    async def model_infer(self, request: Any, call: Call) -> Any:
        self.ctx.auth.check_predict(call.headers)
        infer, raw = decode_infer(request, call)
        call.check_request_id(self.ctx.settings.limits)
        counts = classification.grpc_counts(request)
        classification.check(self.ctx.catalog.get(infer.model), counts)
        answer = await self.dataplane.infer(infer, PROTOCOL, strict_dtype=True)
        response = oip.ModelInferResponse(
            model_name=answer.model, model_version=str(answer.version), id=request.id
        )
        outputs = classification.apply(answer.outputs, counts, as_bytes=True)
        encode_outputs(response, outputs, raw)
        call.answered(answer)
        return response


def handlers(ctx: GatewayContext) -> list[grpc.GenericRpcHandler]:
    """One generic handler for `inference.GRPCInferenceService`."""
    servicer = OipServicer(ctx)
    boundary = Boundary(ctx, PROTOCOL)
    plain = unary_methods(boundary, oip, {
        "ServerLive": servicer.server_live,
        "ServerReady": servicer.server_ready,
        "ServerMetadata": servicer.server_metadata,
        "ModelReady": servicer.model_ready,
        "ModelMetadata": servicer.model_metadata,
    })  # fmt: skip
    methods = {
        **plain,
        "ModelInfer": boundary.unary(
            servicer.model_infer,
            oip.ModelInferRequest,
            oip.ModelInferResponse,
            lambda m: m.model_name,
            rpc=f"{oip.SERVICE}/ModelInfer",
        ),
        **extension_methods(ctx, boundary),  # ModelStatistics, ModelConfig, RepositoryIndex
        "ModelStreamInfer": stream_handler(ctx, decode_infer),
    }
    return [grpc.method_handlers_generic_handler(oip.SERVICE, methods)]
