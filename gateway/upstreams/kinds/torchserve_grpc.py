"""TorchServe over gRPC: `InferenceAPIsService/Predictions`, readiness by `Ping`.

The input tensors travel as a tensor frame (wire/tensor_frames.py) under
the `data` key of the request's input map and the outputs come back as one. TorchServe's
gRPC frontend passes no Content-Type to the handler, so the handler recognises the frame
by its magic bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from backends.torchserve._proto.inference_pb2 import (
    PredictionResponse,
    PredictionsRequest,
    TorchServeHealthResponse,
)
from wire.tensor_frames import is_frame
from gateway.core.types import Framework, InferRequest
from gateway.upstreams.kinds.bodies import frame_body, frame_outputs
from gateway.upstreams.failures import Target, from_http
from gateway.upstreams.transports.grpc_channels import GrpcCall
from gateway.upstreams.pooled import Decoded
from gateway.upstreams.torchserve_token import TokenSource

_SERVICE = "/org.pytorch.serve.grpc.inference.InferenceAPIsService"
PREDICTIONS = f"{_SERVICE}/Predictions"
PING = f"{_SERVICE}/Ping"
INPUT_KEY = "data"  # the handler reads the "body" or "data" entry of the input map


class TorchServeGrpc:
    """TorchServe's gRPC messages (a `Codec` for `PooledUpstream` over `GrpcWire`).

    Args:
        token: the inference key's source (`TokenSource()` = no authorization).
    """

    framework: Framework = "pytorch"

    def __init__(self, token: TokenSource | None = None) -> None:
        self.token = token or TokenSource()

    def encode(self, request: InferRequest) -> GrpcCall:
        metadata = (("x-request-id", request.request_id), *self.token.metadata())
        return GrpcCall(
            PREDICTIONS,
            PredictionsRequest.SerializeToString,
            PredictionResponse.FromString,
            predictions_request(request),
            metadata,
        )

    def decode(self, answer: Any, request: InferRequest, target: Target) -> Decoded:
        """The tensor-frame answer; TorchServe's gRPC path answers OK with an error body when
        the failing request shared its server-side batch with others, so that is checked
        first."""
        body = answer.prediction
        if not is_frame(body):
            raise from_http(_error_code(body), body, target)
        return Decoded(frame_outputs(body, target))

    def probe(self, model: str) -> GrpcCall:
        """`Ping` (the server's health, not the model's)."""
        return GrpcCall(
            PING, _empty, TorchServeHealthResponse.FromString, b"", self.token.metadata()
        )

    def is_ready(self, answer: Any) -> bool:
        return "Healthy" in answer.health


def predictions_request(request: InferRequest) -> PredictionsRequest:
    """The `PredictionsRequest` for an `InferRequest`: a tensor frame under `data`."""
    version = "" if request.version is None else str(request.version)
    return PredictionsRequest(
        model_name=request.model, model_version=version, input={INPUT_KEY: frame_body(request)}
    )


def _error_code(body: bytes) -> int:
    try:
        code = orjson.loads(body).get("code", 500)
    except (orjson.JSONDecodeError, AttributeError):
        return 500
    return code if isinstance(code, int) else 500


def _empty(_: object) -> bytes:
    return b""  # google.protobuf.Empty serialises to nothing
