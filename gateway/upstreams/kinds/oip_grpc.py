"""Any Open Inference Protocol server over gRPC: `GRPCInferenceService/ModelInfer` with
`raw_input_contents`, readiness by `ModelReady`.

Inputs go as raw bytes (what tritonclient.grpc sends); the answer is read from
`raw_output_contents` when the server used them (Triton does for raw requests) or from
the typed `contents` field of each output's datatype otherwise (KServe's servers may).
The version that ran is the answer's `model_version`.

Source: KServe's Open Inference Protocol (gRPC, `inference.GRPCInferenceService`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway._proto import oip
from gateway.codecs.oip_raw import DATATYPES, datatype_of, from_raw, to_raw
from gateway.core.errors import GatewayError, UpstreamError
from gateway.core.types import Framework, InferRequest
from gateway.upstreams.failures import Target
from gateway.upstreams.pooled import Decoded
from gateway.upstreams.transports.grpc_channels import GrpcCall

_SERVICE = f"/{oip.SERVICE}"
MODEL_INFER = f"{_SERVICE}/ModelInfer"
MODEL_READY = f"{_SERVICE}/ModelReady"
# The typed `InferTensorContents` field of each datatype (FP16 travels raw only).
_CONTENTS = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class OipGrpc:
    """OIP v2 gRPC messages (a `Codec` for `PooledUpstream` over `GrpcWire`).

    Args:
        framework: the arm this server serves (`pytorch` for the `.pt2` export).
    """

    def __init__(self, framework: Framework = "pytorch") -> None:
        self.framework: Framework = framework

    def encode(self, request: InferRequest) -> GrpcCall:
        metadata = (("x-request-id", request.request_id),)
        return GrpcCall(
            MODEL_INFER,
            oip.ModelInferRequest.SerializeToString,
            oip.ModelInferResponse.FromString,
            infer_request(request),
            metadata,
        )

    def decode(self, answer: Any, request: InferRequest, target: Target) -> Decoded:
        try:
            outputs = read_outputs(answer)
        except (ValueError, GatewayError) as exc:
            raise UpstreamError(target.backend, f"{target}: unreadable OIP answer ({exc})") from exc
        version = answer.model_version
        return Decoded(outputs, int(version) if version.isdigit() else None)

    def probe(self, model: str) -> GrpcCall:
        return GrpcCall(
            MODEL_READY,
            oip.ModelReadyRequest.SerializeToString,
            oip.ModelReadyResponse.FromString,
            oip.ModelReadyRequest(name=model),
        )

    def is_ready(self, answer: Any) -> bool:
        return bool(answer.ready)


def infer_request(request: InferRequest) -> Any:
    """The `ModelInferRequest`: every input raw, the asked outputs (none = all)."""
    message = oip.ModelInferRequest(
        model_name=request.model,
        model_version="" if request.version is None else str(request.version),
        id=request.request_id,
    )
    for name, value in request.inputs.items():
        datatype = datatype_of(value.dtype)
        message.inputs.add(name=name, datatype=datatype, shape=value.shape)
        message.raw_input_contents.append(to_raw(value, datatype))
    for name in request.outputs:
        message.outputs.add(name=name)
    return message


def read_outputs(answer: Any) -> dict[str, np.ndarray]:
    raw = answer.raw_output_contents
    if raw and len(raw) != len(answer.outputs):
        raise ValueError(f"{len(raw)} raw_output_contents for {len(answer.outputs)} outputs")
    outputs = {}
    for i, tensor in enumerate(answer.outputs):
        shape = list(tensor.shape)
        if raw:
            outputs[tensor.name] = from_raw(tensor.name, tensor.datatype, shape, raw[i])
            continue
        field = _CONTENTS.get(tensor.datatype)
        if field is None:
            raise ValueError(f"output '{tensor.name}': {tensor.datatype} without raw contents")
        values = getattr(tensor.contents, field)
        flat = np.asarray(values, dtype=DATATYPES[tensor.datatype])
        outputs[tensor.name] = flat.reshape(shape)
    return outputs
