"""Hypothesis against every ingress's codecs: random shapes, dtypes, malformed and truncated
payloads, over REST (TF Serving JSON, OIP v2 JSON) and gRPC (PredictionService,
GRPCInferenceService). Whatever arrives, the answer is a 2xx or a 4xx with a JSON error
(REST) or a non-server gRPC code, in bounded time: never a 5xx, a crash or a hang.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway._proto import oip
from gateway._proto.tfserving import PREDICT, PredictRequest, PredictResponse
from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SERVER_CODES = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}
DATATYPES = ["FP32", "FP64", "FP16", "INT8", "INT32", "INT64", "UINT8", "BOOL", "BYTES", "X"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=40,
)
shapes = st.lists(st.integers(min_value=-2, max_value=70), max_size=4)
tf_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"instances": json_values}),
    st.fixed_dictionaries({"inputs": json_values}),
    st.fixed_dictionaries(
        {
            "instances": st.lists(
                st.lists(st.floats(allow_nan=False, width=32), max_size=6), max_size=4
            )
        }
    ),
    st.fixed_dictionaries({"signature_name": st.text(max_size=5), "instances": json_values}),
)
v2_tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input", "other", ""]),
        "datatype": st.sampled_from(DATATYPES),
        "shape": shapes,
        "data": json_values,
    },
    optional={"parameters": st.dictionaries(st.text(max_size=5), scalars, max_size=2)},
)
v2_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"inputs": st.lists(v2_tensors, max_size=3)},
        optional={"id": scalars, "outputs": json_values, "parameters": json_values},
    ),
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, grpc.Channel]]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    store = make_store(tmp_path_factory.mktemp("fuzz"))
    app = create_app(settings_for(store, grpc_port=0), upstreams)  # type: ignore[arg-type]
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel,
    ):
        yield client, channel


def _assert_client_error_at_most(reply: Any) -> None:
    assert reply.status_code < 500, (reply.status_code, reply.text[:300])
    if reply.status_code >= 400:
        assert isinstance(reply.json().get("error"), str)


def _post(client: TestClient, path: str, content: bytes) -> Any:
    return client.post(path, content=content, headers={"Content-Type": "application/json"})


@EXAMPLES
@given(body=tf_bodies)
def test_tf_serving_rest_never_fails_on_the_server(gateway: Any, body: Any) -> None:
    client, _ = gateway
    _assert_client_error_at_most(_post(client, "/v1/models/toy:predict", json.dumps(body).encode()))


@EXAMPLES
@given(body=v2_bodies)
def test_v2_rest_never_fails_on_the_server(gateway: Any, body: Any) -> None:
    client, _ = gateway
    _assert_client_error_at_most(_post(client, "/v2/models/toy/infer", json.dumps(body).encode()))


@EXAMPLES
@given(cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=40))
def test_truncated_and_garbled_bodies_are_client_errors(
    gateway: Any, cut: int, junk: bytes
) -> None:
    client, _ = gateway
    valid = {
        "/v1/models/toy:predict": {"instances": [[0.0, 5.0, 1.0, 2.0]]},
        "/v2/models/toy/infer": {
            "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]
        },
    }
    for path, body in valid.items():
        raw = json.dumps(body).encode()
        _assert_client_error_at_most(_post(client, path, raw[:cut] + junk))


def _rpc(channel: grpc.Channel, path: str, payload: bytes, response: Any) -> grpc.StatusCode:
    method = channel.unary_unary(
        path, request_serializer=lambda b: b, response_deserializer=response.FromString
    )
    try:
        method(payload, timeout=10)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


oip_tensors = st.builds(
    lambda name, datatype, shape, values, raw: (name, datatype, shape, values, raw),
    st.sampled_from(["input", "x"]),
    st.sampled_from(DATATYPES),
    st.lists(st.integers(min_value=-1, max_value=70), max_size=4),
    st.lists(st.floats(allow_nan=True, width=32), max_size=70),
    st.one_of(st.none(), st.binary(max_size=300)),
)


@EXAMPLES
@given(tensors=st.lists(oip_tensors, max_size=3))
def test_oip_grpc_never_fails_on_the_server(gateway: Any, tensors: list[Any]) -> None:
    _, channel = gateway
    request = oip.ModelInferRequest(model_name="toy")
    for name, datatype, shape, values, raw in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[max(s, 0) for s in shape])
        tensor.contents.fp32_contents.extend(values)
        if raw is not None:
            request.raw_input_contents.append(raw)
    code = _rpc(
        channel, f"/{oip.SERVICE}/ModelInfer", request.SerializeToString(), oip.ModelInferResponse
    )
    assert code not in SERVER_CODES


@EXAMPLES
@given(
    dtype=st.integers(min_value=0, max_value=30),
    dims=st.lists(st.integers(min_value=-2, max_value=70), max_size=4),
    content=st.binary(max_size=300),
    floats=st.lists(st.floats(width=32), max_size=70),
)
def test_tf_serving_grpc_never_fails_on_the_server(
    gateway: Any, dtype: int, dims: list[int], content: bytes, floats: list[float]
) -> None:
    _, channel = gateway
    request = PredictRequest()
    request.model_spec.name = "toy"
    tensor = request.inputs["input"]
    tensor.dtype = dtype
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    if content:
        tensor.tensor_content = content
    tensor.float_val.extend(floats)
    assert _rpc(channel, PREDICT, request.SerializeToString(), PredictResponse) not in SERVER_CODES


@EXAMPLES
@given(payload=st.binary(max_size=200))
def test_random_bytes_on_grpc_are_invalid_argument(gateway: Any, payload: bytes) -> None:
    _, channel = gateway
    for path, response in (
        (PREDICT, PredictResponse),
        (f"/{oip.SERVICE}/ModelInfer", oip.ModelInferResponse),
    ):
        assert _rpc(channel, path, payload, response) not in SERVER_CODES
