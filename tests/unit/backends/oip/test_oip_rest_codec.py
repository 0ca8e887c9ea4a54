"""The OIP server's REST bodies against tritonclient.http's own encoder and decoder."""

from __future__ import annotations

import numpy as np
import pytest

from backends.oip.errors import InvalidInput
from backends.oip.rest_codec import decode_infer, encode_infer
from tests.triton_clients import call

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_requests_decode_to_the_same_tensors(binary: bool) -> None:
    encoded = call(
        "encode_request",
        inputs=[{"name": "input", "datatype": "FP32", "array": X, "binary": binary}],
        outputs=[{"name": "class", "binary": True}],
        request_id="r",
    )
    length = encoded["json_size"]
    request = decode_infer(encoded["body"], None if length is None else str(length))
    np.testing.assert_array_equal(request.inputs["input"], X)
    assert request.id == "r" and request.outputs == ["class"] and request.binary == {"class": True}


def test_answers_decode_in_tritonclient_binary_and_json() -> None:
    encoded = call(
        "encode_request",
        inputs=[{"name": "input", "datatype": "FP32", "array": X}],
        outputs=[{"name": "probabilities", "binary": True}, {"name": "class", "binary": False}],
    )
    request = decode_infer(encoded["body"], str(encoded["json_size"]))
    outputs = {"probabilities": X, "class": np.array([3, 1, 2], np.int64)}
    body, length = encode_infer("m", 2, request, outputs)
    assert length is not None and body[:length].startswith(b'{"model_name":"m","model_version":"2"')
    decoded = call("decode_response", body=body, header_length=length, want=list(outputs))
    np.testing.assert_array_equal(decoded["outputs"]["probabilities"], X)
    np.testing.assert_array_equal(decoded["outputs"]["class"], outputs["class"])


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"{", None, "not JSON"),
        (b'{"inputs": 3}', None, "an 'inputs' list"),
        (b'{"inputs": [{"name": "a", "datatype": "FP99", "shape": [1]}]}', None, "FP99"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": [1]}]}', None,
         r"1 values do not fill shape \[2\]"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1],'
         b' "parameters": {"binary_data_size": 8}}]}AAAA', "88", "past the data"),
        (b'{"inputs": []}', "999", "must be a byte count within the body"),
    ],
)  # fmt: skip
def test_malformed_requests_name_their_field(body: bytes, length: str | None, message: str) -> None:
    if length == "88":
        length = str(len(body) - 4)
    with pytest.raises(InvalidInput, match=message):
        decode_infer(body, length)
