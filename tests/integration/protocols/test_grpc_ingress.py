"""The gateway's gRPC ingress in front of the real backends, driven by unchanged official
clients: `tensorflow-serving-api`'s PredictionServiceStub, `tritonclient.grpc`, and
`tritonclient.http` against the v2 REST ingress (the tritonclients run in their own venv,
`tests.triton_clients`). Each must give the same top-1 as a
direct backend call, for both frameworks (pinned by metadata or header).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from backends.process import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.integration.direct import direct_outputs
from tests.triton_clients import TritonClientError, call
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL = "digits-mlp"
ARMS = ("tensorflow", "pytorch")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:200], "mlp")


@pytest.fixture(scope="module")
def direct(stack: dict[str, Any], x: np.ndarray) -> dict[str, np.ndarray]:
    """Top-1 per framework straight from each backend's REST API."""
    return {arm: out["class"] for arm, out in direct_outputs(stack, MODEL, x).items()}


def _tf_predict(address: str, x: np.ndarray, metadata: list[tuple[str, str]]) -> tuple[Any, Any]:
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "serving_default"
        request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
        return stub.Predict.with_call(request, timeout=30, metadata=metadata)


@pytest.mark.parametrize("arm", ARMS)
def test_tensorflow_serving_stub_through_the_gateway(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, np.ndarray], arm: str
) -> None:
    reply, call = _tf_predict(stack["gateway"]["grpc"], x, [("x-backend", arm)])
    trailing = dict(call.trailing_metadata())
    assert trailing["x-backend"] == arm and trailing["x-model-version"] == "1"
    assert trailing["x-request-id"]
    np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["class"]), direct[arm])
    assert tf.make_ndarray(reply.outputs["probabilities"]).shape == (len(x), 10)


def test_gateway_matches_a_direct_tf_serving_grpc_call(
    stack: dict[str, Any], x: np.ndarray
) -> None:
    via_gateway, _ = _tf_predict(stack["gateway"]["grpc"], x, [("x-backend", "tensorflow")])
    straight, _ = _tf_predict(stack["tensorflow"]["grpc"], x, [])
    np.testing.assert_array_equal(
        tf.make_ndarray(via_gateway.outputs["class"]), tf.make_ndarray(straight.outputs["class"])
    )


@pytest.mark.parametrize("arm", ARMS)
def test_tritonclient_grpc_through_the_gateway(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, np.ndarray], arm: str
) -> None:
    url = stack["gateway"]["grpc"]
    health = call("grpc_health", url=url, model=MODEL)
    assert health["server_live"] and health["server_ready"] and health["model_ready"]
    assert health["input_datatypes"][0] == "FP32" and health["versions"] == ["1"]
    tensor = {"name": "input", "datatype": "FP32", "array": x}
    result = call(
        "grpc_infer", url=url, model=MODEL, inputs=[tensor], outputs=["class"],
        want=["class", "probabilities"], headers={"x-backend": arm},
    )["outputs"]  # fmt: skip
    np.testing.assert_array_equal(result["class"], direct[arm])
    assert result["probabilities"] is None  # only what was asked for


@pytest.mark.parametrize("arm", ARMS)
def test_tritonclient_http_against_the_v2_rest_ingress(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, np.ndarray], arm: str
) -> None:
    url = stack["gateway"]["rest"].removeprefix("http://")
    health = call("http_health", url=url, model=MODEL)
    assert health["server_ready"] and health["model_ready"]
    # JSON tensors both ways; the binary extension (the default) is in test_clients.py.
    tensor = {"name": "input", "datatype": "FP32", "array": x, "binary": False}
    result = call(
        "http_infer", url=url, model=MODEL, inputs=[tensor], want=["class"],
        outputs=[{"name": "class", "binary": False}], headers={"X-Backend": arm},
    )["outputs"]  # fmt: skip
    np.testing.assert_array_equal(result["class"], direct[arm])


def test_real_failures_have_the_reference_codes(stack: dict[str, Any], x: np.ndarray) -> None:
    url = stack["gateway"]["grpc"]
    tensor = {"name": "input", "datatype": "FP32", "array": np.zeros((1, 7), np.float32)}
    with pytest.raises(TritonClientError) as bad_shape:
        call("grpc_infer", url=url, model=MODEL, inputs=[tensor], want=[])
    with pytest.raises(TritonClientError) as unknown:
        call("grpc_infer", url=url, model="digits-nope", inputs=[tensor], want=[])
    assert bad_shape.value.status == "StatusCode.INVALID_ARGUMENT"
    assert unknown.value.status == "StatusCode.NOT_FOUND"
    with pytest.raises(grpc.RpcError) as wrong_dtype:
        _tf_predict(stack["gateway"]["grpc"], x.astype(np.float64), [])
    assert wrong_dtype.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_health_check_of_the_launched_gateway(stack: dict[str, Any]) -> None:
    with grpc.insecure_channel(stack["gateway"]["grpc"]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_backend_down_without_failover_is_unavailable(stack: dict[str, Any], x: np.ndarray) -> None:
    """A gateway in process whose PyTorch replica is a dead port; pinned calls cannot fail over."""
    settings = GatewaySettings(
        model_store=stack["store"], grpc_port=0, auth={"admin_token": "t"},  # type: ignore[arg-type]
        tensorflow={"transport": "grpc", "grpc": [stack["tensorflow"]["grpc"]]},  # type: ignore[arg-type]
        pytorch={"rest": [f"http://127.0.0.1:{free_port()}"], "timeout_s": 2.0},  # type: ignore[arg-type]
        experiments={"log_enabled": False},  # type: ignore[arg-type]
    )  # fmt: skip
    app = create_app(settings)
    with TestClient(app):
        address = f"127.0.0.1:{app.state.grpc_port}"
        with pytest.raises(grpc.RpcError) as down_arm:
            _tf_predict(address, x[:1], [("x-backend", "pytorch")])
        reply, _ = _tf_predict(address, x[:1], [("x-backend", "tensorflow")])
    assert down_arm.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "pytorch" in down_arm.value.details()  # type: ignore[attr-defined]
    assert reply.outputs["class"].int64_val or reply.outputs["class"].tensor_content
