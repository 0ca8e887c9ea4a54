"""The TorchServe handler's codecs and batching, with a fake context (no server)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
import torch

from backends.torchserve import handler as ts_handler
from backends.torchserve.handler import InputError, Signature, decode_request, encode_response

SIG = Signature("input", [64])


def test_row_format_plain_and_named() -> None:
    batch, fmt = decode_request({"instances": [[1.0] * 64, [2] * 64]}, "application/json", SIG)
    assert fmt == "row" and batch.shape == (2, 64) and batch.dtype == np.float32
    named, _ = decode_request({"instances": [{"input": [0] * 64}]}, "application/json", SIG)
    assert named.shape == (1, 64)


def test_columnar_format_plain_and_named() -> None:
    batch, fmt = decode_request(
        b'{"inputs": {"input": [[0.5]]}}', "application/json", Signature("input", [1])
    )
    assert fmt == "columnar" and batch.tolist() == [[0.5]]
    plain, _ = decode_request('{"inputs": [[1, 2]]}', "application/json", Signature("input", [2]))
    assert plain.tolist() == [[1.0, 2.0]]


def test_npy_body() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((3, 64), dtype=np.float32))
    batch, fmt = decode_request(buffer.getvalue(), "application/x-npy", SIG)
    assert fmt == "npy" and batch.shape == (3, 64)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{not json", "application/json", "malformed JSON body"),
        (
            {"instances": [[1.0] * 63]},
            "application/json",
            r"input: expected shape \[-1, 64\], got \[1, 63\]",
        ),
        ({"instances": [["a"] * 64]}, "application/json", "expected numbers"),
        ({"instances": [[1.0] * 64, [1.0]]}, "application/json", "ragged|expected shape"),
        ({"instances": []}, "application/json", "non-empty list"),
        (
            {"instances": [{"pixels": [0] * 64}]},
            "application/json",
            "instances\\[0\\] has no input named 'input'",
        ),
        ({"inputs": {"pixels": [[0] * 64]}}, "application/json", "unknown input 'pixels'"),
        ({"data": 1}, "application/json", "missing 'instances'"),
        ({"instances": [[0] * 64], "inputs": [[0] * 64]}, "application/json", "both"),
        ([1, 2], "application/json", "JSON object"),
        (b"not npy", "application/x-npy", "not a valid .npy"),
    ],
)
def test_bad_input_names_the_problem(body: Any, content_type: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        decode_request(body, content_type, SIG)


def test_npy_wrong_dtype_is_named() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((1, 64), dtype=np.int64))
    with pytest.raises(InputError, match="input: expected dtype float32, got int64"):
        decode_request(buffer.getvalue(), "application/x-npy", SIG)


def test_responses_use_tf_serving_shapes() -> None:
    outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32), "class": np.array([1])}
    assert json.loads(encode_response(outputs, "row")) == {
        "predictions": [{"probabilities": [0.25, 0.75], "class": 1}]
    }
    assert json.loads(encode_response(outputs, "columnar")) == {
        "outputs": {"probabilities": [[0.25, 0.75]], "class": [1]}
    }
    npz = np.load(io.BytesIO(encode_response(outputs, "npy")))
    assert npz["class"].tolist() == [1]


class FakeContext:
    """The parts of TorchServe's Context the handler uses."""

    def __init__(self, content_types: list[str]) -> None:
        self.content_types = content_types
        self.status: dict[int, tuple[int, str]] = {}
        self.response_types: dict[int, str] = {}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.content_types[idx] if key.lower() == "content-type" else None

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        self.status[idx] = (code, phrase)

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.response_types[idx] = value


class Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = torch.softmax(x[:, :2], dim=-1)
        return {"probabilities": probs, "class": probs.argmax(-1)}


def test_batch_of_requests_is_answered_one_by_one() -> None:
    service = ts_handler.DualserveHandler()
    service.model, service.device, service.signature = (
        Doubler(),
        torch.device("cpu"),
        Signature("input", [2]),
    )
    data = [
        {"body": {"instances": [[0.0, 1.0]]}},
        {"body": b"{broken"},
        {"body": {"inputs": [[3.0, 0.0], [0.0, 3.0]]}},
    ]
    context = FakeContext(["application/json"] * 3)
    responses = service.handle(data, context)
    assert json.loads(responses[0])["predictions"][0]["class"] == 1
    assert context.status[1][0] == 400 and "malformed JSON" in json.loads(responses[1])["error"]
    assert json.loads(responses[2])["outputs"]["class"] == [0, 1]
    assert 0 not in context.status and 2 not in context.status
