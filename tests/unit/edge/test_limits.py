"""Request limits on every ingress: each refusal is a 400 / INVALID_ARGUMENT naming the
setting (body size: 413 / RESOURCE_EXHAUSTED, tested in the ingress modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._proto.tfserving import PredictRequest
from gateway.edge.limits import json_depth
from tests.unit.gateway.test_gateway_app import _gateway
from tests.unit.protocols.test_grpc_ingress import infer_request, predict_request, running

LIMITS = {"max_batch_size": 3, "max_tensor_elements": 16, "max_json_depth": 5}
FEATURES = 4


def _rows(n: int) -> np.ndarray:
    return np.ones((n, FEATURES), np.float32)


def _v2(x: np.ndarray) -> dict[str, Any]:
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    return {"inputs": [{**tensor, "data": x.ravel().tolist()}]}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('{"instances": [[1, 2]]}', 3),
        ('["[[[", {"k": "]]]\\\\"}, [[]]]', 3),  # brackets inside strings do not count
        ('{"a": "\\"[[[[", "b": {}}', 2),
    ],
)
def test_json_depth_by_hand(text: str, depth: int) -> None:
    json.loads(text)  # the cases are valid JSON
    assert json_depth(text.encode()) == depth


def test_rest_limits_are_400s_naming_the_setting(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, limits=LIMITS):
        cases = [
            ("/v1/models/toy:predict", {"instances": _rows(4).tolist()}, "max_batch_size"),
            ("/v2/models/toy/infer", _v2(_rows(4)), "max_batch_size"),
            ("/v1/models/toy:predict", {"instances": [[1.0] * 20]}, "max_tensor_elements"),
            ("/v2/models/toy/infer", _v2(np.ones((1, 20), np.float32)), "max_tensor_elements"),
            ("/v1/models/toy:predict", {"instances": [[[[[[1.0]]]]]]}, "max_json_depth"),
            (
                "/v2/models/toy/infer",
                {"inputs": [{"parameters": {"a": [[[1]]]}}]},
                "max_json_depth",
            ),
        ]
        for path, body, limit in cases:
            answer = gw.client.post(path, json=body)
            assert answer.status_code == 400, (path, limit, answer.text)
            assert f"limits.{limit}" in answer.json()["error"], answer.text
        assert (
            gw.client.post(
                "/v1/models/toy:predict", json={"instances": _rows(3).tolist()}
            ).status_code
            == 200
        )
        assert gw.calls == 1  # nothing refused reached an upstream


def _grpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def test_grpc_limits_are_invalid_argument_naming_the_setting(tmp_path: Path) -> None:
    with running(tmp_path, limits=LIMITS) as gw:
        cases = [
            (lambda: gw.predict(predict_request(_rows(4))), "max_batch_size"),
            (lambda: gw.infer(infer_request(_rows(4))), "max_batch_size"),
            (lambda: gw.infer(infer_request(_rows(4), raw=False)), "max_batch_size"),
            (
                lambda: gw.predict(predict_request(np.ones((1, 20), np.float32))),
                "max_tensor_elements",
            ),
            (lambda: gw.infer(infer_request(np.ones((1, 20), np.float32))), "max_tensor_elements"),
        ]
        for call, limit in cases:
            error = _grpc_error(call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert f"limits.{limit}" in (error.details() or "")
        assert sum(len(u.calls) for u in gw.upstreams.values()) == 0


def test_a_tiny_tensorproto_cannot_fill_a_huge_shape(tmp_path: Path) -> None:
    """TF's fill rule (one value fills the shape) must not let 20 bytes allocate 40 GB."""
    request = PredictRequest()
    request.model_spec.name = "toy"
    tensor = request.inputs["input"]
    tensor.dtype = 1  # DT_FLOAT
    tensor.tensor_shape.dim.add(size=100_000)
    tensor.tensor_shape.dim.add(size=100_000)
    tensor.float_val.append(1.0)
    assert request.ByteSize() < 64
    with running(tmp_path) as gw:
        error = _grpc_error(lambda: gw.predict(request))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "limits.max_tensor_elements" in (error.details() or "")


def test_a_chunked_body_is_refused_once_it_passes_the_limit(tmp_path: Path) -> None:
    def chunks() -> Any:
        for _ in range(1000):  # 1 MB in all, no Content-Length
            yield b"[" + b"0," * 499 + b"0]"

    for gw in _gateway(tmp_path, max_body_bytes=10_000):
        answer = gw.client.post("/v1/models/toy:predict", content=chunks())
        assert answer.status_code == 413
        assert "limit of 10000 bytes" in answer.json()["error"]
        assert gw.calls == 0


def _reference_depth(value: Any) -> int:
    """Nesting by recursion over the parsed value: the independent truth."""
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        return 1 + max((_reference_depth(child) for child in children), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, indent=st.sampled_from([None, 1]))
def test_json_depth_matches_a_recursive_count(value: Any, indent: int | None) -> None:
    """Strings full of brackets, quotes and backslashes (hypothesis's text() draws them)
    must not change the count; nor must whitespace."""
    text = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    assert json_depth(text) == _reference_depth(value)
