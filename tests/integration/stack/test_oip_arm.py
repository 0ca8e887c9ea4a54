"""The real stack with the pytorch arm on the bundled OIP server (`dualserve up
--pytorch-server oip`): the `.pt2` MLP and CNN answer through every gateway ingress exactly
as TorchServe answers with the TorchScript `.mar` (top-1 100%, probabilities to 1e-5). And
TorchServe and the OIP server as two named arms of one experiment (`torch-ts`, `torch-pt2`:
arms name their server), each routing key on its arm, the analysis naming both."""

from __future__ import annotations

import hashlib
import time
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


# --- TorchServe and the OIP server as two arms of one experiment (arms name their server)

SERVER_ARMS = {
    "torch-ts": {"framework": "pytorch", "server": "torchserve"},
    "torch-pt2": {"framework": "pytorch", "server": "oip"},
}
RULES = {  # no labels here: decide on errors and latency, margins loose for a few units
    "decision_metrics": ["error_rate", "latency_p99_ms"],
    "margins": {"error_rate_points": 100, "p99_ms": 1000},
}


def _admin(state: RunState, method: str, path: str, **kw: object) -> httpx.Response:
    token = state.gateway.admin_token_file.read_text().strip()
    return httpx.request(  # type: ignore[arg-type]
        method, f"{state.gateway.rest}{path}", headers={"Authorization": f"Bearer {token}"},
        timeout=60, **kw,
    )  # fmt: skip


def _oip_rows(state: RunState, model: str) -> float:
    """The OIP server's own count of rows it answered for `model` v1 (its `/metrics`)."""
    assert state.oip is not None
    page = httpx.get(f"{state.oip.rest}/metrics", timeout=30).text
    prefix = f'nv_inference_count_total{{model="{model}",version="1"}}'
    return sum(float(r.split()[-1]) for r in page.splitlines() if r.startswith(prefix))


def _arm_by_hand(key: str) -> str:
    """The split's hash of the key written out (blake2b-64, big-endian, / 2**64): torch-ts
    holds [0, .5), torch-pt2 [.5, 1)."""
    point = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64
    return "torch-ts" if point < 0.5 else "torch-pt2"


def _predict(state: RunState, model: str, x: np.ndarray, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(base_url=state.gateway.rest, timeout=60) as client:
        return client.post(f"/v1/models/{model}:predict", json={"instances": x.tolist()},
                           headers=headers)  # fmt: skip


def _rows(reply: httpx.Response) -> dict[str, np.ndarray]:
    assert reply.status_code == 200, reply.text
    rows = reply.json()["predictions"]
    return {
        "class": np.array([r["class"] for r in rows], np.int64),
        "probabilities": np.array([r["probabilities"] for r in rows], np.float32),
    }


def test_torchserve_and_the_oip_server_are_two_arms_of_one_experiment(
    oip_stack: tuple[RunState, StackPaths],
) -> None:
    state, _ = oip_stack
    model = "digits-mlp"
    for running in _admin(state, "GET", "/admin/experiments").json().get("experiments", []):
        if running.get("model") == model and running.get("status") == "running":
            ended = _admin(state, "POST", f"/admin/experiments/{running['id']}/end",
                           json={"reason": "server arms next"})  # fmt: skip
            assert ended.status_code == 200, ended.text
    spec = {"id": "ts-vs-pt2", "model": model, "arms": SERVER_ARMS, "control": "torch-ts",
            "split": {"torch-ts": 50.0, "torch-pt2": 50.0}, **RULES}  # fmt: skip
    created = _admin(state, "POST", "/admin/experiments", json=spec)
    assert created.status_code == 201, created.text

    # Pinned by X-Arm, the two arms answer the same digits alike, each from its server.
    x = _x(model)
    before = _oip_rows(state, model)
    by_arm = {arm: _predict(state, model, x, {"X-Arm": arm}) for arm in SERVER_ARMS}
    assert _oip_rows(state, model) - before == len(x)  # only torch-pt2 reached the OIP server
    for reply in by_arm.values():
        assert reply.headers["X-Backend"] == "pytorch", reply.text
    _same(_rows(by_arm["torch-pt2"]), _rows(by_arm["torch-ts"]))
    _same(_rows(by_arm["torch-ts"]), _torchserve(state, model, x))

    # Routed by key: each key lands on its arm (the OIP server counts exactly the
    # torch-pt2 keys' rows), and the analysis counts each arm's units.
    keys = [f"user-{i}" for i in range(40)]
    one = x[:1]
    before = _oip_rows(state, model)
    for key in keys:
        reply = _predict(state, model, one, {"X-Routing-Key": key})
        assert reply.status_code == 200 and reply.headers["X-Backend"] == "pytorch", reply.text
    expected = {arm: sum(_arm_by_hand(k) == arm for k in keys) for arm in SERVER_ARMS}
    assert all(n > 0 for n in expected.values()), expected
    assert _oip_rows(state, model) - before == expected["torch-pt2"]
    deadline = time.monotonic() + 60
    while True:
        analysis = _admin(state, "GET", "/admin/experiments/ts-vs-pt2").json()
        counted = {arm: f["requests"] for arm, f in analysis.get("arms", {}).items()}
        if counted == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (analysis["control"], analysis["candidates"]) == ("torch-ts", ["torch-pt2"])
    assert set(analysis["comparisons"]) == {"torch-pt2"}
    assert counted == expected
    assert {a: spec["server"] for a, spec in analysis["arm_specs"].items()} == {
        "torch-ts": "torchserve", "torch-pt2": "oip",
    }  # fmt: skip


def test_the_load_tests_torch_pt2_target_reaches_the_oip_server_over_rest_and_grpc(
    oip_stack: tuple[RunState, StackPaths],
) -> None:
    """`gateway->torch-pt2` as the sweep runs it: its policy set by PATCH (as
    `loadtest.sweep.set_policy`), its REST headers, its gRPC user's `x-arm` metadata."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from loadtest.targets import PT2_GATEWAY, grpc_targets, rest_targets

    state, _ = oip_stack
    model = "digits-mlp"
    [rest] = [t for t in rest_targets(state, model, None) if t.name == PT2_GATEWAY]
    [over_grpc] = [t for t in grpc_targets(state, model) if t.name == PT2_GATEWAY]
    body = {"policy": rest.policy, "reason": "load-test target", "set_by": "loadtest"}
    reply = _admin(state, "PATCH", f"/admin/models/{model}/policy", json=body)
    assert reply.status_code == 200, reply.text
    try:
        x = _x(model)[:1]
        before = _oip_rows(state, model)
        answer = httpx.post(f"{rest.host}{rest.path}", json={"instances": x.tolist()},
                            headers=rest.headers, timeout=60)  # fmt: skip
        assert answer.status_code == 200 and answer.headers["X-Backend"] == "pytorch", answer.text
        with grpc.insecure_channel(over_grpc.host) as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            pin = [("x-arm", over_grpc.env["DUALSERVE_PIN_ARM"])]
            stub.Predict(request, timeout=60, metadata=pin)
        assert _oip_rows(state, model) - before == 2  # both calls reached the OIP server
    finally:
        assert _admin(state, "DELETE", f"/admin/models/{model}/policy").status_code == 200
