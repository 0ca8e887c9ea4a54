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
        ({"instances": [["a"] * 64]}, "application/json", "expected DT_FLOAT .* strings"),
        ({"instances": [[1.0] * 64, [1.0]]}, "application/json", "not form a rectangular"),
        ({"instances": []}, "application/json", "'instances' is an empty list"),
        ({"instances": [{"pixels": [0] * 64}]}, "application/json", "unknown input 'pixels'"),
        ({"inputs": {"pixels": [[0] * 64]}}, "application/json", "unknown input 'pixels'"),
        ({"data": 1}, "application/json", "Missing 'inputs' or 'instances' key"),
        ({"instances": [[0] * 64], "inputs": [[0] * 64]}, "application/json", "Not both"),
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


class HeaderContext(FakeContext):
    """FakeContext plus response headers, as TorchServe 0.12's Context has."""

    def __init__(self, content_types: list[str]) -> None:
        super().__init__(content_types)
        self.headers: dict[int, dict[str, str]] = {}

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.headers.setdefault(idx, {})[key] = value


def _service() -> ts_handler.DualserveHandler:
    service = ts_handler.DualserveHandler()
    service.model, service.device = Doubler(), torch.device("cpu")
    service.signature = Signature("input", [2])
    return service


def test_grpc_body_without_content_type_is_sniffed() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((2, 64), dtype=np.float32))
    batch, fmt = decode_request(buffer.getvalue(), "", SIG)
    assert fmt == "npy" and batch.shape == (2, 64)
    _, fmt = decode_request(b'{"instances": [[0]]}', "", Signature("input", [1]))
    assert fmt == "row"


def test_grpc_map_keys_data_and_body_are_accepted() -> None:
    body = b'{"instances": [[0.0, 1.0]]}'
    context = HeaderContext(["", ""])
    responses = _service().handle([{"data": body}, {"body": body}], context)
    assert [json.loads(r)["predictions"][0]["class"] for r in responses] == [1, 1]


def test_missing_body_names_the_expected_key() -> None:
    context = HeaderContext(["", ""])
    responses = _service().handle([{"input": b"{}"}, {"data": b'{"inputs": [[1, 0]]}'}], context)
    assert context.status[0][0] == 400
    assert "send it under 'data'" in json.loads(responses[0])["message"]


def test_every_response_reports_its_batch_size() -> None:
    context = HeaderContext(["application/json"] * 2)
    _service().handle([{"body": {"instances": [[0, 1]]}}, {"body": b"{bad"}], context)
    assert [context.headers[i][ts_handler.BATCH_SIZE_HEADER] for i in (0, 1)] == ["2", "2"]


def test_lone_bad_request_fails_the_batch_with_400() -> None:
    # gRPC only carries a status for batch errors, so a request alone in its batch
    # is answered that way (REST 400 / gRPC INVALID_ARGUMENT).
    with pytest.raises(ts_handler.PredictionException) as caught:
        _service().handle([{"body": b"{bad"}], HeaderContext(["application/json"]))
    assert caught.value.error_code == 400 and "malformed JSON" in caught.value.message


def test_error_reason_phrase_is_one_ascii_line() -> None:
    assert ts_handler._reason_phrase("bad\nvalue é", limit=8) == "bad valu"


def test_tensor_frames_in_and_out() -> None:
    from wire.tensor_frames import decode_frame, encode_frame

    body = encode_frame({"input": np.ones((2, 64), dtype=np.float32)})
    batch, fmt = decode_request(body, "application/octet-stream", SIG)
    assert fmt == "frame" and batch.shape == (2, 64)
    outputs = {"probabilities": np.array([[0.5, 0.5]], np.float32), "class": np.array([0])}
    answer = decode_frame(encode_response(outputs, "frame"))
    assert answer["class"].tolist() == [0] and answer["probabilities"].dtype == np.float32


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (
            {"input": np.ones((1, 64), dtype=np.float64)},
            "input: expected dtype float32, got float64",
        ),
        ({"pixels": np.ones((1, 64), dtype=np.float32)}, "no tensor named 'input'"),
        ({"input": np.ones((1, 8), dtype=np.float32)}, r"expected shape \[-1, 64\], got \[1, 8\]"),
    ],
)
def test_bad_frames_name_the_problem(tensors: dict[str, np.ndarray], message: str) -> None:
    from wire.tensor_frames import encode_frame

    with pytest.raises(InputError, match=message):
        decode_request(encode_frame(tensors), "", SIG)


def test_truncated_frame_is_rejected() -> None:
    from wire.tensor_frames import encode_frame

    body = encode_frame({"input": np.ones((1, 64), dtype=np.float32)})[:-10]
    with pytest.raises(InputError, match="runs past the end"):
        decode_request(body, "", SIG)


def test_nan_and_infinity_reach_the_model_and_come_back_as_tokens() -> None:
    """TF Serving's REST API "JSON Mapping": NaN/Infinity read and written, float32 as float32."""
    body = b'{"instances": [[NaN, Infinity, -Infinity' + b", 0" * 61 + b"]]}"
    batch, fmt = decode_request(body, "application/json", SIG)
    assert fmt == "row" and np.isnan(batch[0, 0]) and batch[0, 1] == np.inf
    outputs = {"probabilities": np.array([[np.nan, 0.022345351055264473]], np.float32)}
    assert encode_response(outputs, "columnar") == b'{"outputs":[[NaN,0.022345351]]}'
