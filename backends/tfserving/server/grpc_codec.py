"""TF Serving's protobuf messages, to and from the core's types.

Tensors go through `tf.make_ndarray` / `tf.make_tensor_proto` (numpy on `tensor_content`,
no per-element Python loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from backends.tfserving.server.core import PredictResult
from backends.tfserving.server.errors import InvalidArgument
from backends.tfserving.server.manager import LoadedVersion, VersionStatus
from backends.tfserving.server.signature import ModelSpec

_STATE = get_model_status_pb2.ModelVersionStatus.State
_ERROR_CODE = {"OK": 0, "NOT_FOUND": 5, "UNKNOWN": 2, "INVALID_ARGUMENT": 3}


def model_spec(proto: model_pb2.ModelSpec) -> ModelSpec:
    """A request's ModelSpec: name, version or version_label, signature name."""
    choice = proto.WhichOneof("version_choice")
    return ModelSpec(
        name=proto.name,
        version=proto.version.value if choice == "version" else None,
        label=proto.version_label if choice == "version_label" else None,
        signature_name=proto.signature_name,
    )


def request_inputs(request: predict_pb2.PredictRequest) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays; a broken proto names its input."""
    inputs = {}
    for name, proto in request.inputs.items():
        try:
            inputs[name] = tf.make_ndarray(proto)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"input '{name}': malformed TensorProto: {exc}") from None
    return inputs


def predict_response(result: PredictResult) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, result.model, result.version, result.signature_name)
    for name, value in result.outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


def fill_model_spec(target: model_pb2.ModelSpec, name: str, version: int, signature: str) -> None:
    target.name = name
    target.version.value = version
    target.signature_name = signature


def status_response(
    statuses: Sequence[VersionStatus],
) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = _STATE.Value(status.state)
        entry.status.error_code = _ERROR_CODE.get(status.error_code, 2)
        entry.status.error_message = status.error_message
    return response


def metadata_response(
    servable: LoadedVersion, fields: Sequence[str]
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata for `signature_def`, the only field TF Serving supports."""
    if not fields:
        raise InvalidArgument("GetModelMetadataRequest must specify at least one metadata_field")
    for field_name in fields:
        if field_name != "signature_def":
            raise InvalidArgument(f"Metadata field {field_name} is not supported")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_model_spec(response.model_spec, servable.name, servable.version, "")
    response.metadata["signature_def"].Pack(servable.signature_def_map())
    return response
