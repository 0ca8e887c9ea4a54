"""The one TF Serving JSON codec (wire/tfserving_json.py), with and without orjson.

References: TF Serving's "RESTful API" guide (request/response formats, "Encoding binary
values", "JSON Mapping": NaN, Infinity, -Infinity), and its JSON writer
(tensorflow_serving/util/json_tensor.cc `WriteDecimal`: float32 printed as float32).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator

import numpy as np
import pytest

from wire import json_text
from wire import tfserving_json as codec

F32 = np.dtype(np.float32)


@pytest.fixture(params=["orjson", "stdlib"])
def flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every codec test runs as in the gateway (orjson) and as in the official TorchServe
    image (standard library only)."""
    if request.param == "stdlib":
        monkeypatch.setattr(json_text, "_orjson", None)
    yield request.param


@pytest.mark.parametrize(
    ("text", "expected"),
    [("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf), ("1.5", 1.5)],
)
def test_non_finite_tokens_are_read(flavour: str, text: str, expected: float) -> None:
    body = codec.loads(f'{{"instances": [[{text}, 0]]}}'.encode())
    value = body["instances"][0][0]
    assert value == expected or (math.isnan(expected) and math.isnan(value))


def test_non_finite_floats_are_written_as_tokens(flavour: str) -> None:
    outputs = {"y": np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32)}
    assert codec.encode_predict(outputs, row_format=False) == (
        b'{"outputs":[[NaN,Infinity,-Infinity,0.5]]}'
    )
    # and they read back: what a backend answers as NaN reaches the client as NaN
    again = codec.loads(codec.encode_predict(outputs, row_format=True))["predictions"][0]
    assert math.isnan(again[0]) and again[1:] == [math.inf, -math.inf, 0.5]


# Values a float32 softmax produces; TF Serving prints 0.022345351 for the first.
FLOAT32_VALUES = np.array(
    [0.022345351055264473, 0.1, 1 / 3, 0.97555876, 1e-5, 3.4028235e38, 1.0, 7e-45], np.float32
)


def test_float32_is_written_as_the_shortest_decimal_that_reads_back(flavour: str) -> None:
    body = codec.encode_predict({"p": FLOAT32_VALUES}, row_format=False).decode()
    numbers = body[len('{"outputs":[') : -2].split(",")
    assert numbers[0] == "0.022345351"  # not the float64 widening 0.022345351055264473
    for text, value in zip(numbers, FLOAT32_VALUES, strict=True):
        assert np.float32(text) == value  # round-trips as float32
        digits = len(text.split("e")[0].replace(".", "").lstrip("0").rstrip("0") or "0")
        assert digits <= 9  # float32 never needs more than 9 significant digits
        if digits > 1:  # and one digit fewer does not read back: the shortest
            assert np.float32(format(float(value), f".{digits - 1}g")) != value


def test_float64_and_integers_keep_their_own_precision(flavour: str) -> None:
    outputs = {"d": np.array([0.1, 1 / 3]), "n": np.array([2**40, -1], np.int64)}
    body = json.loads(codec.encode_predict(outputs, row_format=False))["outputs"]
    assert body == {"d": [0.1, 1 / 3], "n": [2**40, -1]}


def test_row_and_columnar_requests_give_the_same_tensor(flavour: str) -> None:
    rows = codec.decode_predict({"instances": [[0, 1], [2, 3.5]]}, {"x": F32})[1]["x"]
    named = codec.decode_predict({"instances": [{"x": [0, 1]}, {"x": [2, 3.5]}]}, {"x": F32})
    columns = codec.decode_predict({"inputs": {"x": [[0, 1], [2, 3.5]]}}, {"x": F32})
    bare = codec.decode_predict({"inputs": [[0, 1], [2, 3.5]]}, {"x": F32})
    for tensor in (rows, named[1]["x"], columns[1]["x"], bare[1]["x"]):
        assert tensor.dtype == np.float32 and tensor.tolist() == [[0, 1], [2, 3.5]]
    assert named[0].row_format and not columns[0].row_format


def test_b64_values_are_bytes_and_bytes_outputs_are_b64(flavour: str) -> None:
    raw = b"\x00\xffpng"
    wire = {"b64": base64.b64encode(raw).decode()}
    strings = {"s": np.dtype(object)}
    _, tensors = codec.decode_predict({"instances": [wire, "text"]}, strings)
    assert tensors["s"].tolist() == [raw, b"text"]
    outputs = {"image_bytes": np.array([raw], dtype=object)}
    assert json.loads(codec.encode_predict(outputs, False)) == {"outputs": [wire]}


def test_several_outputs_answer_one_object_per_row(flavour: str) -> None:
    outputs = {"p": np.array([[0.25, 0.75], [1.0, 0.0]], np.float32), "c": np.array([1, 0])}
    body = json.loads(codec.encode_predict(outputs, row_format=True))
    assert body == {"predictions": [{"p": [0.25, 0.75], "c": 1}, {"p": [1.0, 0.0], "c": 0}]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "JSON Value: request body must be a JSON object"),
        ({"signature_name": "s"}, "Missing 'inputs' or 'instances' key"),
        ({"instances": [[1, 2]], "inputs": [[1, 2]]}, "Not both 'instances' and 'inputs'"),
        ({"instances": {"x": 1}}, "Expecting 'instances' to be a list/array"),
        ({"instances": []}, "'instances' is an empty list"),
        ({"instances": [[1, 2]], "signature_name": 3}, "'signature_name' must be a string"),
        ({"instances": [{"x": [1, 2]}, {"y": [1, 2]}]}, "Failed to process element: 1"),
        ({"instances": [["a", "b"]]}, r"input 'x': expected DT_FLOAT \(float32\) values but"),
        ({"instances": [[1, 2], [1]]}, "input 'x': values do not form a rectangular tensor"),
    ],
)
def test_bad_bodies_raise_the_codec_error(flavour: str, document: object, message: str) -> None:
    with pytest.raises(codec.JsonFormatError, match=message):
        codec.decode_predict(document, {"x": F32})


def test_malformed_json_is_a_parse_error(flavour: str) -> None:
    with pytest.raises(codec.JsonFormatError, match=r"^JSON Parse error: "):
        codec.loads(b'{"instances": [[1, 2')
    with pytest.raises(codec.JsonFormatError, match=r"^JSON Parse error: "):
        codec.loads(b"[" * 100_000)  # nesting deeper than any parser's stack


def test_errors_as_maps_the_codec_error_to_each_sides_type() -> None:
    class SideError(Exception):
        pass

    with pytest.raises(SideError, match="Missing 'inputs'"), codec.errors_as(SideError):
        codec.parse_predict({})


def test_classify_and_regress_texts_are_tf_servings() -> None:
    """tensorflow_serving/servables/tensorflow/classifier.cc and regressor.cc."""
    assert codec.wrong_method("regress", "tensorflow/serving/predict") == (
        "Expected regression signature method_name to be tensorflow/serving/regress. "
        "Was: tensorflow/serving/predict"
    )


def test_scalar_and_empty_outputs(flavour: str) -> None:
    outputs = {
        "s": np.array(np.float32(0.1)),
        "inf": np.array(np.float32(np.inf)),
        "empty": np.zeros((0, 3), np.float32),
    }
    body = codec.encode_predict(outputs, row_format=False)
    assert body == b'{"outputs":{"empty":[],"inf":Infinity,"s":0.1}}'


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "When method is classify, key 'examples' is expected and was not found"),
        ({"examples": {"x": 1}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
    ],
)
def test_classify_and_regress_bodies_are_checked_as_tf_serving_does(
    document: dict, problem: str
) -> None:
    """json_tensor.cc FillClassifyRegressRequestFromJson: the body, pretty-printed, then
    the problem."""
    with pytest.raises(codec.JsonFormatError) as caught:
        codec.check_examples(document)
    assert str(caught.value) == f"JSON Value: {json.dumps(document, indent=4)} {problem}"
    codec.check_examples({"examples": [{"x": [1.0]}]})
