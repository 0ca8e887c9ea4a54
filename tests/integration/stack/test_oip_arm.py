"""The real stack with the pytorch arm on the bundled OIP server (`dualserve up
--pytorch-server oip`): the `.pt2` MLP and CNN answer through every gateway ingress exactly
as TorchServe answers with the TorchScript `.mar` (top-1 100%, probabilities to 1e-5)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from dualserve.run_state import RunState
from dualserve.stack import StackPaths, down, status, up
from tests.integration.direct import direct_outputs
from tests.triton_clients import call
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODELS = {"digits-mlp": "mlp", "digits-cnn": "cnn"}
PINNED = {"X-Backend": "pytorch"}


@pytest.fixture(scope="module")
def oip_stack(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunState, StackPaths]]:
    paths = StackPaths(trained_store, tmp_path_factory.mktemp("oip-stack"))
    try:
        yield up(paths, pytorch_server="oip"), paths
    finally:
        down(paths)
    assert status(paths).running() == {}


def _x(model: str) -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:64], MODELS[model])


def _torchserve(state: RunState, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The truth: TorchServe's own answer (the TorchScript `.mar`), asked directly."""
    return direct_outputs(state.model_dump(mode="json"), model, x)["pytorch"]


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["class"], want["class"])  # top-1: 100%
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5, rtol=0)


def _tf_rest(state: RunState, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    with httpx.Client(base_url=state.gateway.rest, timeout=60) as client:
        reply = client.post(
            f"/v1/models/{model}:predict", json={"instances": x.tolist()}, headers=PINNED
        )
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Backend"] == "pytorch" and reply.headers["X-Model-Version"] == "1"
    rows = reply.json()["predictions"]
    return {
        "class": np.array([r["class"] for r in rows], np.int64),
        "probabilities": np.array([r["probabilities"] for r in rows], np.float32),
    }


def _tf_grpc(state: RunState, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    assert state.gateway.grpc is not None
    with grpc.insecure_channel(state.gateway.grpc) as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(request, timeout=60, metadata=[("x-backend", "pytorch")])
    return {name: tf.make_ndarray(reply.outputs[name]) for name in ("class", "probabilities")}


def _oip_rest(state: RunState, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    answer = call(
        "http_infer", url=state.gateway.rest.removeprefix("http://"), model=model,
        inputs=[{"name": "input", "datatype": "FP32", "array": x}],
        want=["class", "probabilities"], headers=PINNED,
    )  # fmt: skip
    return dict(answer["outputs"])


def _oip_grpc(state: RunState, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    answer = call(
        "grpc_infer", url=state.gateway.grpc, model=model,
        inputs=[{"name": "input", "datatype": "FP32", "array": x}],
        want=["class", "probabilities"], headers={"x-backend": "pytorch"},
    )  # fmt: skip
    return dict(answer["outputs"])


INGRESSES = {"tf-rest": _tf_rest, "tf-grpc": _tf_grpc, "oip-rest": _oip_rest, "oip-grpc": _oip_grpc}


@pytest.mark.parametrize("model", MODELS)
def test_the_pt2_arm_answers_as_torchserve_over_every_ingress(
    oip_stack: tuple[RunState, StackPaths], model: str
) -> None:
    state, _ = oip_stack
    x = _x(model)
    want = _torchserve(state, model, x)
    for name, ingress in INGRESSES.items():
        got = ingress(state, model, x)
        try:
            _same(got, want)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_the_answers_came_from_the_oip_server(oip_stack: tuple[RunState, StackPaths]) -> None:
    """The gateway's pytorch arm called the OIP server (its own counters), and `status`
    and `state.json` name the OIP part."""
    state, paths = oip_stack
    assert state.oip is not None and status(paths).oip == state.oip
    with httpx.Client(timeout=30) as client:
        page = client.get(f"{state.oip.rest}/metrics").text
        ready = client.get(f"{state.gateway.rest}/readyz")
    assert ready.status_code == 200
    for model in MODELS:
        line = next(
            row for row in page.splitlines()
            if row.startswith(f'nv_inference_count_total{{model="{model}",version="1"}}')
        )  # fmt: skip
        assert float(line.split()[-1]) >= 4 * 64  # four ingresses, 64 digits each
