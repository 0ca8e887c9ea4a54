"""Unchanged official clients with their default settings against the gateway, for both
frameworks, each answer compared with the direct backend's (the independent truth):

- `tritonclient.http` (binary tensor data extension both ways, its default) and
  `tritonclient.grpc` (raw contents) on the Open Inference Protocol ingresses, run in the
  clients' own venv (`tests.triton_clients`);
- `tensorflow-serving-api`'s stubs: `PredictionService.Predict` and `GetModelMetadata`,
  `ModelService.GetModelStatus`, compared with the TF server's own gRPC answers;
- schemathesis (all checks) against the launched gateway's OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.api_conformance import run_schemathesis
from tests.integration.direct import direct_outputs
from tests.triton_clients import call
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL = "digits-mlp"
ARMS = ("tensorflow", "pytorch")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:50], "mlp")


@pytest.fixture(scope="module")
def direct(stack: dict[str, Any], x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    return direct_outputs(stack, MODEL, x)


def _rest_url(stack: dict[str, Any]) -> str:
    return str(stack["gateway"]["rest"]).removeprefix("http://")


def _same_answer(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["class"], want["class"])
    assert got["probabilities"].dtype == np.float32
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("arm", ARMS)
def test_tritonclient_http_with_its_defaults(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    """Binary inputs, no outputs named: every output comes back as binary data."""
    url = _rest_url(stack)
    metadata = call("http_health", url=url, model=MODEL)["server_metadata"]
    assert "binary_tensor_data" in metadata["extensions"]
    tensor = {"name": "input", "datatype": "FP32", "array": x}  # binary, its default
    result = call(
        "http_infer", url=url, model=MODEL, inputs=[tensor], want=["class", "probabilities"],
        request_id="abc", headers={"X-Backend": arm, "X-Request-Id": "xyz"},
    )  # fmt: skip
    response = result["response"]
    assert response["id"] == "abc"  # the body's id, not the X-Request-Id header
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    _same_answer(result["outputs"], direct[arm])


@pytest.mark.parametrize("arm", ARMS)
def test_tritonclient_http_mixed_json_and_binary_outputs(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    tensor = {"name": "input", "datatype": "FP32", "array": x, "binary": False}
    outputs = [{"name": "probabilities"}, {"name": "class", "binary": False}]
    result = call(
        "http_infer", url=_rest_url(stack), model=MODEL, inputs=[tensor], outputs=outputs,
        want=["class", "probabilities"], headers={"X-Backend": arm},
    )  # fmt: skip
    by_name = {o["name"]: o for o in result["response"]["outputs"]}
    assert "data" in by_name["class"] and "data" not in by_name["probabilities"]
    _same_answer(result["outputs"], direct[arm])


@pytest.mark.parametrize("arm", ARMS)
def test_tritonclient_grpc_with_its_defaults(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    tensor = {"name": "input", "datatype": "FP32", "array": x}
    result = call(
        "grpc_infer", url=stack["gateway"]["grpc"], model=MODEL, inputs=[tensor],
        want=["class", "probabilities"], request_id="abc", headers={"x-backend": arm},
    )  # fmt: skip
    assert result["id"] == "abc"
    _same_answer(result["outputs"], direct[arm])


def _predict(address: str, x: np.ndarray, arm: str | None) -> Any:
    with grpc.insecure_channel(address) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
        metadata = [("x-backend", arm)] if arm else []
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30, metadata=metadata)


@pytest.mark.parametrize("arm", ARMS)
def test_tensorflow_serving_predict_stub(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    reply = _predict(stack["gateway"]["grpc"], x, arm)
    got = {name: tf.make_ndarray(reply.outputs[name]) for name in ("class", "probabilities")}
    _same_answer(got, direct[arm])
    if arm == "tensorflow":  # and the TF server's own gRPC answer, bit for bit
        straight = _predict(stack["tensorflow"]["grpc"], x, None)
        for name in ("class", "probabilities"):
            np.testing.assert_array_equal(got[name], tf.make_ndarray(straight.outputs[name]))


def _status(address: str) -> Any:
    with grpc.insecure_channel(address) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)


def _metadata(address: str) -> Any:
    with grpc.insecure_channel(address) as channel:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.GetModelMetadata(request, timeout=30)


def test_model_status_stub_answers_as_the_tf_server(stack: dict[str, Any]) -> None:
    assert _status(stack["gateway"]["grpc"]) == _status(stack["tensorflow"]["grpc"])


def _signature(reply: Any) -> dict[str, Any]:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def["serving_default"]

    def tensors(group: Any) -> dict[str, Any]:
        return {
            key: (info.dtype, [d.size for d in info.tensor_shape.dim])
            for key, info in group.items()
        }

    return {"inputs": tensors(serving.inputs), "outputs": tensors(serving.outputs)}


def test_model_metadata_stub_names_the_tf_servers_signature(stack: dict[str, Any]) -> None:
    via_gateway, straight = (
        _metadata(stack["gateway"]["grpc"]),
        _metadata(stack["tensorflow"]["grpc"]),
    )
    assert via_gateway.model_spec.name == straight.model_spec.name == MODEL
    assert via_gateway.model_spec.version.value == straight.model_spec.version.value
    assert _signature(via_gateway) == _signature(straight)


def test_schemathesis_finds_nothing_against_the_launched_gateway(stack: dict[str, Any]) -> None:
    checks, findings = run_schemathesis(stack["gateway"]["rest"], stack["admin"])
    assert not findings, "\n".join(str(f) for f in findings)
    assert checks > 1_000
