"""TF Serving's REST JSON and the signature checks, with numpy only (no TensorFlow)."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from backends.tfserving.server import rest_codec
from backends.tfserving.server.errors import FailedPrecondition, InvalidArgument
from backends.tfserving.server.manager import VersionStatus
from backends.tfserving.server.signature import (
    SignatureInfo,
    TensorInfo,
    check_output_filter,
    select_signature,
    validate_inputs,
)

F32 = np.dtype(np.float32)
MLP = SignatureInfo(
    "serving_default",
    inputs={"input": TensorInfo("input", F32, "DT_FLOAT", (-1, 4))},
    outputs={
        "probabilities": TensorInfo("probabilities", F32, "DT_FLOAT", (-1, 3)),
        "class": TensorInfo("class", np.dtype(np.int64), "DT_INT64", (-1,)),
    },
)
TWO_INPUTS = SignatureInfo(
    "serving_default",
    inputs={
        "a": TensorInfo("a", F32, "DT_FLOAT", (-1, 2)),
        "tok": TensorInfo("tok", np.dtype(object), "DT_STRING", (-1,)),
    },
    outputs={"y": TensorInfo("y", F32, "DT_FLOAT", (-1,))},
)


def decode(body: dict | bytes, sig: SignatureInfo = MLP) -> dict[str, np.ndarray]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return rest_codec.decode_inputs(rest_codec.parse_predict_body(raw), sig)


def test_row_and_columnar_formats_give_the_same_float32_tensor() -> None:
    rows = decode({"instances": [[0, 1, 2, 3], [4, 5, 6, 7.5]]})
    columns = decode({"inputs": {"input": [[0, 1, 2, 3], [4, 5, 6, 7.5]]}})
    bare = decode({"inputs": [[0, 1, 2, 3], [4, 5, 6, 7.5]]})
    for inputs in (rows, columns, bare):
        assert inputs["input"].dtype == np.float32
        np.testing.assert_array_equal(inputs["input"][1], [4, 5, 6, 7.5])


def test_named_instances_and_b64_strings() -> None:
    payload = base64.b64encode(b"\x00\xffbytes").decode()
    inputs = decode(
        {"instances": [{"a": [1, 2], "tok": {"b64": payload}}, {"a": [3, 4], "tok": "text"}]},
        TWO_INPUTS,
    )
    assert inputs["a"].shape == (2, 2)
    assert list(inputs["tok"]) == [b"\x00\xffbytes", b"text"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"instances": [[1, 2', "JSON Parse error"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"signature_name": "x"}', "Missing 'inputs' or 'instances'"),
        (b'{"instances": [[1]], "inputs": [[1]]}', "Not both"),
        (b'{"instances": {"input": 1}}', "'instances' to be a list"),
        (b'{"instances": []}', "empty"),
        (b'{"instances": [[1, 2]], "signature_name": 3}', "signature_name"),
    ],
)
def test_malformed_bodies_are_400_with_a_reason(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        rest_codec.parse_predict_body(raw)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"instances": [["a", "b", "c", "d"]]},
            "input 'input': expected DT_FLOAT .* received strings",
        ),
        ({"instances": [[1, 2, 3, 4], [1, 2]]}, "input 'input': values do not form a rectangular"),
        ({"inputs": {"x": [[1, 2, 3, 4]]}}, r"Sent extra: \{x\}. Missing but required: \{input\}"),
        ({"instances": [{"x": [1, 2, 3, 4]}]}, r"Sent extra: \{x\}"),
    ],
)
def test_bad_tensors_name_the_input(body: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        decode(body)


def test_mixed_named_instances_are_rejected_with_the_element_index() -> None:
    body = {"instances": [{"a": [1, 2], "tok": "x"}, {"a": [1, 2]}]}
    with pytest.raises(InvalidArgument, match="element: 1 of 'instances'"):
        decode(body, TWO_INPUTS)


def test_integer_json_for_an_int_input_rejects_fractions() -> None:
    sig = SignatureInfo("s", {"n": TensorInfo("n", np.dtype(np.int64), "DT_INT64", (-1,))}, {})
    assert decode({"instances": [1, 2]}, sig)["n"].dtype == np.int64
    with pytest.raises(InvalidArgument, match="DT_INT64"):
        decode({"instances": [1.5]}, sig)


def test_shape_and_dtype_checks_name_expected_and_received() -> None:
    with pytest.raises(InvalidArgument, match=r"expected shape \[-1, 4\] but received \[1, 3\]"):
        validate_inputs(MLP, {"input": np.zeros((1, 3), np.float32)})
    with pytest.raises(InvalidArgument, match=r"expected dtype DT_FLOAT .* received float64"):
        validate_inputs(MLP, {"input": np.zeros((1, 4))})
    assert validate_inputs(MLP, {"input": np.zeros((5, 4), np.float32)}) == 5


def test_inputs_with_different_batch_sizes_are_refused() -> None:
    inputs = {"a": np.zeros((2, 2), np.float32), "tok": np.array([b"x"], dtype=object)}
    with pytest.raises(InvalidArgument, match="equal 0th-dimension size"):
        validate_inputs(TWO_INPUTS, inputs)


def test_signature_and_output_filter_errors_match_tf_serving() -> None:
    with pytest.raises(FailedPrecondition, match=r'Serving signature key "nope" not found\.'):
        select_signature({"serving_default": MLP}, "nope")
    assert select_signature({"serving_default": MLP}, "") is MLP
    assert check_output_filter(MLP, ["class"]) == ("class",)
    assert set(check_output_filter(MLP, [])) == {"class", "probabilities"}
    with pytest.raises(InvalidArgument, match="output tensor alias not found in signature: z"):
        check_output_filter(MLP, ["z"])
    with pytest.raises(InvalidArgument, match="duplicate output tensor alias: class"):
        check_output_filter(MLP, ["class", "class"])


OUTPUTS = {
    "probabilities": np.array([[0.25, 0.5, 0.25], [0.1, 0.2, 0.7]], np.float32),
    "class": np.array([1, 2], np.int64),
}


def test_row_response_is_a_list_of_objects_for_several_outputs() -> None:
    body = orjson.loads(rest_codec.encode_predictions(OUTPUTS, row_format=True))
    assert body == {
        "predictions": [
            {"probabilities": [0.25, 0.5, 0.25], "class": 1},
            {"probabilities": [0.1, 0.2, 0.7], "class": 2},
        ]
    }


def test_single_output_and_columnar_responses() -> None:
    single = orjson.loads(rest_codec.encode_predictions({"class": OUTPUTS["class"]}, True))
    assert single == {"predictions": [1, 2]}
    columnar = orjson.loads(rest_codec.encode_predictions(OUTPUTS, row_format=False))
    assert columnar["outputs"]["class"] == [1, 2]
    bare = orjson.loads(rest_codec.encode_predictions({"class": OUTPUTS["class"]}, False))
    assert bare == {"outputs": [1, 2]}


def test_string_outputs_are_text_or_b64_for_names_ending_in_bytes() -> None:
    outputs = {"label": np.array([b"cat"], object), "raw_bytes": np.array([b"\xff"], object)}
    body = orjson.loads(rest_codec.encode_predictions(outputs, True))
    assert body == {"predictions": [{"label": "cat", "raw_bytes": {"b64": "/w=="}}]}


def test_status_json_is_tf_servings() -> None:
    body = orjson.loads(rest_codec.encode_status([VersionStatus(2, "AVAILABLE")]))
    assert body == {
        "model_version_status": [
            {
                "version": "2",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
