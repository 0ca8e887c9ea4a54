"""TF Serving's gRPC services on grpc.aio, with the `tensorflow-serving-api` stubs.

`PredictionService.Predict` / `GetModelMetadata` and `ModelService.GetModelStatus` are
served; Classify, Regress, MultiInference and HandleReloadConfigRequest answer
UNIMPLEMENTED. Every `ServingError` aborts the call with its gRPC code and message.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from backends.tfserving.server import grpc_codec
from backends.tfserving.server.core import ServingCore
from backends.tfserving.server.errors import ServingError, Unimplemented

log = logging.getLogger("tfserving.grpc")
Reply = TypeVar("Reply")
Method = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Reply]]


def grpc_errors(method: Method[Reply]) -> Method[Reply]:
    """The one gRPC error handler: ServingError -> its status code; anything else INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Reply:
        try:
            return await method(self, request, context)
        except ServingError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        except Exception as exc:
            log.exception("unexpected error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise AssertionError("context.abort returns only by raising")

    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    @grpc_errors
    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        spec = grpc_codec.model_spec(request.model_spec)
        inputs = grpc_codec.request_inputs(request)
        result = await self.core.predict(
            spec, lambda sig: inputs, list(request.output_filter), "GRPC"
        )
        return grpc_codec.predict_response(result)

    @grpc_errors
    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        servable = self.core.manager.resolve(grpc_codec.model_spec(request.model_spec))
        return grpc_codec.metadata_response(servable, list(request.metadata_field))

    @grpc_errors
    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        raise Unimplemented("Classify is not supported by the bundled server; use Predict")

    @grpc_errors
    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        raise Unimplemented("Regress is not supported by the bundled server; use Predict")

    @grpc_errors
    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        raise Unimplemented("MultiInference is not supported by the bundled server; use Predict")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    @grpc_errors
    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        spec = grpc_codec.model_spec(request.model_spec)
        statuses = self.core.manager.status(spec.name, spec.version, spec.label)
        return grpc_codec.status_response(statuses)

    @grpc_errors
    async def HandleReloadConfigRequest(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        raise Unimplemented("HandleReloadConfigRequest is not supported by the bundled server")


def add_services(server: grpc.aio.Server, core: ServingCore) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
