"""TorchServe over gRPC (the default PyTorch transport): `InferenceAPIsService/Predictions`.

The input tensors travel as a tensor frame (backends/torchserve/tensor_frames.py) under
the `data` key of the request's input map and the outputs come back as one. TorchServe's
gRPC frontend passes no Content-Type to the handler, so the handler recognises the frame
by its magic bytes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from backends.torchserve._proto.inference_pb2 import (
    PredictionResponse,
    PredictionsRequest,
    TorchServeHealthResponse,
)
from backends.torchserve.tensor_frames import is_frame
from gateway.errors import GatewayError
from gateway.types import Framework, InferRequest, InferResponse
from gateway.upstreams.bodies import frame_body, frame_outputs, select_outputs
from gateway.upstreams.calls import call_timeout, version_for
from gateway.upstreams.failures import Target, from_http
from gateway.upstreams.grpc_channels import ChannelPool, Replica
from gateway.upstreams.tfserving_grpc import grpc_call
from gateway.upstreams.torchserve_token import TokenSource

_SERVICE = "/org.pytorch.serve.grpc.inference.InferenceAPIsService"
PREDICTIONS = f"{_SERVICE}/Predictions"
PING = f"{_SERVICE}/Ping"
INPUT_KEY = "data"  # the handler reads the "body" or "data" entry of the input map


class TorchServeGrpcUpstream:
    """TorchServe's gRPC inference API on every replica.

    Args:
        addresses: `host:port` of each replica's gRPC inference port.
        token: the inference key's source (`TokenSource()` = no authorization).
        timeout_s: the longest any call may take (a caller's shorter deadline wins).
        unhealthy_for_s: how long a replica that failed to connect is skipped.
        default_versions: per model, the version reported when the request names none.
    """

    framework: Framework = "pytorch"

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        token: TokenSource | None = None,
        timeout_s: float = 5.0,
        unhealthy_for_s: float = 2.0,
        default_versions: Mapping[str, int] | None = None,
    ) -> None:
        self.channels = ChannelPool(self.framework, addresses, unhealthy_for_s)
        self.token = token or TokenSource()
        self.timeout_s = timeout_s
        self.default_versions = dict(default_versions or {})

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        target = Target(self.framework, request.model, request.version, request.version_label)
        message = predictions_request(request)
        metadata = (("x-request-id", request.request_id), *self.token.metadata())

        async def attempt(replica: Replica, left: float) -> Any:
            method = replica.unary(
                PREDICTIONS, PredictionsRequest.SerializeToString, PredictionResponse.FromString
            )
            return await grpc_call(method, message, left, target, metadata)

        started = time.perf_counter()
        reply = await self.channels.get().call(attempt, call_timeout(timeout, self.timeout_s))
        elapsed = time.perf_counter() - started
        outputs = _outputs(reply.prediction, target)
        return InferResponse(
            model=request.model,
            version=version_for(request, self.default_versions),
            backend=self.framework,
            outputs=select_outputs(outputs, request.outputs, target),
            request_id=request.request_id,
            timings={"upstream": elapsed},
        )

    async def ready(self, model: str) -> bool:
        """True when some replica's `Ping` says Healthy (the server, not per model)."""
        target = Target(self.framework, model)
        for replica in self.channels.get().replicas:
            method = replica.unary(PING, _empty, TorchServeHealthResponse.FromString)
            try:
                health = await grpc_call(method, b"", self.timeout_s, target, self.token.metadata())
            except GatewayError:
                continue
            if "Healthy" in health.health:
                return True
        return False

    async def aclose(self) -> None:
        await self.channels.aclose()


def predictions_request(request: InferRequest) -> PredictionsRequest:
    """The `PredictionsRequest` for an `InferRequest`: a tensor frame under `data`."""
    body = frame_body(request)
    version = "" if request.version is None else str(request.version)
    return PredictionsRequest(
        model_name=request.model, model_version=version, input={INPUT_KEY: body}
    )


def _outputs(body: bytes, target: Target) -> dict[str, np.ndarray]:
    """The tensor-frame answer; TorchServe's gRPC path answers OK with an error body when
    the failing request shared its server-side batch with others, so that is checked first."""
    if not is_frame(body):
        raise from_http(_error_code(body), body, target)
    return frame_outputs(body, target)


def _error_code(body: bytes) -> int:
    try:
        code = orjson.loads(body).get("code", 500)
    except (orjson.JSONDecodeError, AttributeError):
        return 500
    return code if isinstance(code, int) else 500


def _empty(_: object) -> bytes:
    return b""  # google.protobuf.Empty serialises to nothing
