"""TF Serving's protobuf messages to and from the core's types (imports TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from backends.tfserving.server import grpc_codec
from backends.tfserving.server.core import PredictResult
from backends.tfserving.server.errors import InvalidArgument
from backends.tfserving.server.manager import VersionStatus
from backends.tfserving.server.signature import ModelSpec


def test_model_spec_reads_version_label_and_signature() -> None:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    assert grpc_codec.model_spec(request.model_spec) == ModelSpec("m")
    request.model_spec.version.value = 3
    request.model_spec.signature_name = "sig"
    assert grpc_codec.model_spec(request.model_spec) == ModelSpec("m", 3, None, "sig")
    request.model_spec.version_label = "stable"
    assert grpc_codec.model_spec(request.model_spec) == ModelSpec("m", None, "stable", "sig")


def test_request_tensors_keep_dtype_and_shape() -> None:
    request = predict_pb2.PredictRequest()
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(batch))
    request.inputs["n"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0])))
    inputs = grpc_codec.request_inputs(request)
    np.testing.assert_array_equal(inputs["input"], batch)
    assert inputs["input"].dtype == np.float32
    assert inputs["n"].dtype == np.float64


def test_a_malformed_tensor_proto_names_its_input() -> None:
    request = predict_pb2.PredictRequest()
    proto = request.inputs["input"]
    proto.dtype = tf.float32.as_datatype_enum
    proto.tensor_shape.dim.add(size=4)
    proto.tensor_content = b"\x00" * 3  # not 4 float32s
    with pytest.raises(InvalidArgument, match="input 'input'"):
        grpc_codec.request_inputs(request)


def test_predict_response_round_trips_through_make_ndarray() -> None:
    outputs: dict[str, np.ndarray] = {
        "class": np.array([3, 1], np.int64),
        "p": np.eye(2, dtype=np.float32),
    }
    response = grpc_codec.predict_response(PredictResult("m", 2, "serving_default", outputs))
    assert (response.model_spec.name, response.model_spec.version.value) == ("m", 2)
    assert response.model_spec.signature_name == "serving_default"
    for name, value in outputs.items():
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value)


def test_status_response_states_and_error_codes() -> None:
    response = grpc_codec.status_response(
        [VersionStatus(2, "AVAILABLE"), VersionStatus(1, "END", "UNKNOWN", "bad")]
    )
    first, second = response.model_version_status
    assert first.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert (second.version, second.status.error_message) == (1, "bad")
    assert second.status.error_code == 2


def test_metadata_fields_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="at least one metadata_field"):
        grpc_codec.metadata_response(object(), [])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="Metadata field foo is not supported"):
        grpc_codec.metadata_response(object(), ["foo"])  # type: ignore[arg-type]
