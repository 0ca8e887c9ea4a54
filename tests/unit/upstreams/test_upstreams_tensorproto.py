"""The TensorProto codec: round trips, typed fields, and wire compatibility with TF's own."""

from __future__ import annotations

import numpy as np
import pytest

from gateway._proto.tfserving import PredictRequest, PredictResponse, TensorProto
from gateway.codecs.tensorproto import (
    DT_FLOAT,
    DT_HALF,
    DT_INT64,
    TensorCodecError,
    from_tensor_map,
    from_tensor_proto,
    to_tensor_map,
    to_tensor_proto,
)

ARRAYS = [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.array([1, -2, 2**40], dtype=np.int64),
    np.arange(6, dtype=np.float64).reshape(3, 2),
    np.array([[1, 2]], dtype=np.int32),
    np.array([0, 255], dtype=np.uint8),
    np.array([True, False]),
    np.float32(3.5).reshape(()),
    np.zeros((0, 64), dtype=np.float32),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_keeps_values_dtype_and_shape(array: np.ndarray) -> None:
    decoded = from_tensor_proto(TensorProto.FromString(to_tensor_proto(array).SerializeToString()))
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_encoding_uses_raw_little_endian_bytes() -> None:
    array = np.array([1.0, 2.0], dtype=">f4")  # big-endian input still goes out little-endian
    proto = to_tensor_proto(array)
    assert proto.dtype == DT_FLOAT
    assert proto.tensor_content == np.array([1.0, 2.0], dtype="<f4").tobytes()
    assert not proto.float_val


def _typed(dtype: int, shape: list[int], field: str, values: list) -> TensorProto:
    proto = TensorProto(dtype=dtype)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    getattr(proto, field).extend(values)
    return proto


def test_decodes_typed_fields() -> None:
    floats = from_tensor_proto(_typed(DT_FLOAT, [2, 2], "float_val", [1, 2, 3, 4]))
    ints = from_tensor_proto(_typed(DT_INT64, [3], "int64_val", [7, 8, 9]))
    np.testing.assert_array_equal(floats, np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(ints, np.array([7, 8, 9]))
    assert ints.dtype == np.int64


def test_one_typed_value_fills_the_shape_like_tensorflow() -> None:
    filled = from_tensor_proto(_typed(DT_FLOAT, [2, 3], "float_val", [0.5]))
    np.testing.assert_array_equal(filled, np.full((2, 3), 0.5, dtype=np.float32))


def test_half_values_are_bit_patterns() -> None:
    bits = np.array([1.5, -2.0], dtype=np.float16).view(np.uint16).tolist()
    decoded = from_tensor_proto(_typed(DT_HALF, [2], "half_val", bits))
    np.testing.assert_array_equal(decoded, np.array([1.5, -2.0], dtype=np.float16))


def test_strings_travel_in_string_val() -> None:
    decoded = from_tensor_proto(to_tensor_proto(np.array([b"a", b"bc"])))
    assert decoded.tolist() == [b"a", b"bc"]


@pytest.mark.parametrize(
    ("proto", "message"),
    [
        (TensorProto(dtype=999), "dtype 999"),
        (_typed(DT_FLOAT, [3], "float_val", [1.0, 2.0]), "holds 2 values"),
    ],
)
def test_bad_tensors_name_the_problem(proto: TensorProto, message: str) -> None:
    with pytest.raises(TensorCodecError, match=message):
        from_tensor_proto(proto)


def test_short_tensor_content_is_rejected() -> None:
    proto = to_tensor_proto(np.zeros((2, 2), dtype=np.float32))
    proto.tensor_content = proto.tensor_content[:8]
    with pytest.raises(TensorCodecError, match="needs 4"):
        from_tensor_proto(proto)


def test_unsupported_dtype_is_named() -> None:
    with pytest.raises(TensorCodecError, match="complex64"):
        to_tensor_proto(np.zeros(2, dtype=np.complex64))


def test_tensor_maps() -> None:
    message = PredictRequest()
    to_tensor_map({"input": np.ones((1, 4), dtype=np.float32)}, message.inputs)
    assert from_tensor_map(message.inputs)["input"].shape == (1, 4)


@pytest.fixture(scope="module")
def tf():  # the gateway never imports TensorFlow; its tests compare against it (a dev dependency)
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def predict_pb2(tf):
    from tensorflow_serving.apis import predict_pb2

    return predict_pb2


def test_our_request_parses_as_tensorflow_servings(tf, predict_pb2) -> None:
    ours = PredictRequest()
    ours.model_spec.name = "digits-mlp"
    ours.model_spec.version.value = 3
    ours.model_spec.signature_name = "serving_default"
    pixels = np.random.default_rng(0).random((4, 64), dtype=np.float32)
    labels = np.array([1, 2, 3], dtype=np.int64)
    to_tensor_map({"input": pixels, "labels": labels}, ours.inputs)
    theirs = predict_pb2.PredictRequest.FromString(ours.SerializeToString())
    assert theirs.model_spec.name == "digits-mlp"
    assert theirs.model_spec.version.value == 3
    assert theirs.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(tf.make_ndarray(theirs.inputs["input"]), pixels)
    np.testing.assert_array_equal(tf.make_ndarray(theirs.inputs["labels"]), labels)


TYPED_FIELDS = {np.dtype(np.float32): "float_val", np.dtype(np.int64): "int64_val"}


@pytest.mark.parametrize(
    "values",
    [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([5, 6], dtype=np.int64)],
    ids=str,
)
def test_tensorflow_servings_tensors_decode_with_ours(tf, predict_pb2, values) -> None:
    theirs = predict_pb2.PredictResponse()
    theirs.outputs["content"].CopyFrom(tf.make_tensor_proto(values))
    typed = theirs.outputs["typed"]
    typed.dtype = tf.as_dtype(values.dtype).as_datatype_enum
    typed.tensor_shape.CopyFrom(tf.TensorShape(values.shape).as_proto())
    getattr(typed, TYPED_FIELDS[values.dtype]).extend(values.ravel().tolist())
    decoded = from_tensor_map(PredictResponse.FromString(theirs.SerializeToString()).outputs)
    for name in ("content", "typed"):
        np.testing.assert_array_equal(decoded[name], values)
        assert decoded[name].dtype == values.dtype
