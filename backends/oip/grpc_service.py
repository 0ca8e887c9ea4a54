"""OIP v2 gRPC (`inference.GRPCInferenceService`): health, metadata, readiness, infer with
raw tensor contents, and Triton's `RepositoryIndex`.

Messages are the gateway's copies (`gateway._proto.oip`, Triton's extension messages from
`gateway._proto.triton`), tensors read and written by `gateway.protocols.grpc.oip_tensors`
(raw answers when the request was raw, as Triton does). Errors end the call with the
status code of `backends.oip.errors` and its sentence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from backends.oip.core import OipCore
from backends.oip.errors import InvalidInput, OipError
from backends.oip.server_info import model_metadata, server_metadata
from gateway._proto import oip, triton
from gateway.core.errors import BadRequest
from gateway.protocols.grpc.oip_tensors import decode_inputs, encode_outputs

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class OipServicer:
    """The service's methods over one `OipCore`."""

    def __init__(self, core: OipCore) -> None:
        self.core = core

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        return oip.ServerReadyResponse(ready=bool(self.core.repository.models()))

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        try:
            self.core.repository.get(request.name, _version(request.version))
        except InvalidInput:
            raise
        except OipError:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        return oip.ServerMetadataResponse(**server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        repository = self.core.repository
        served = repository.get(request.name, _version(request.version))
        return oip.ModelMetadataResponse(**model_metadata(served, repository))

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        try:
            inputs, raw = decode_inputs(request)
        except BadRequest as exc:
            raise InvalidInput(exc.message) from None
        served, outputs = await self.core.infer(
            request.model_name,
            _version(request.model_version),
            inputs,
            [o.name for o in request.outputs],
        )
        response = oip.ModelInferResponse(
            model_name=served.name, model_version=str(served.version), id=request.id
        )
        encode_outputs(response, outputs, raw)
        return response

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = triton.RepositoryIndexResponse()
        for entry in self.core.repository.index():
            response.models.add(
                name=entry.name, version=str(entry.version), state=entry.state, reason=entry.reason
            )
        return response


def _version(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"version '{text}' must be a positive integer")
    return int(text)


_MESSAGES: dict[str, tuple[Any, Any]] = {
    "ServerLive": (oip.ServerLiveRequest, oip.ServerLiveResponse),
    "ServerReady": (oip.ServerReadyRequest, oip.ServerReadyResponse),
    "ModelReady": (oip.ModelReadyRequest, oip.ModelReadyResponse),
    "ServerMetadata": (oip.ServerMetadataRequest, oip.ServerMetadataResponse),
    "ModelMetadata": (oip.ModelMetadataRequest, oip.ModelMetadataResponse),
    "ModelInfer": (oip.ModelInferRequest, oip.ModelInferResponse),
    "RepositoryIndex": (triton.RepositoryIndexRequest, triton.RepositoryIndexResponse),
}


def _guarded(method: Method) -> Method:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(request, context)
        except OipError as exc:
            await context.abort(exc.code, exc.message)

    return call


def add_service(server: grpc.aio.Server, core: OipCore) -> None:
    """Register the service's methods on `server`."""
    servicer = OipServicer(core)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, name)),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in _MESSAGES.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(oip.SERVICE, handlers),))
