"""The TF Serving side end to end: the bundled server started by the launcher, driven by
the official `tensorflow-serving-api` gRPC stubs and by REST, on free loopback ports."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from backends.process import pid_alive
from backends.tfserving import (
    TFServingEndpoints,
    TFServingSettings,
    start_tfserving,
    stop_tfserving,
    tfserving_status,
)
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from trainers.tf_model import load_predictor

TIMEOUT = 10.0
CHUNK = 8  # the launcher's execution batch size: requests of this size are not split


def launch(store: Path, run_dir: Path, **settings: Any) -> Iterator[TFServingEndpoints]:
    endpoints = start_tfserving(store, run_dir, TFServingSettings(**settings))
    try:
        yield endpoints
    finally:
        stop_tfserving(run_dir)
        assert not pid_alive(endpoints.pid), "the server outlived stop_tfserving"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tfserving")


@pytest.fixture(scope="module")
def server(trained_store: Path, run_dir: Path) -> Iterator[Any]:
    yield from launch(trained_store, run_dir)


@pytest.fixture(scope="module")
def http(server: TFServingEndpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: TFServingEndpoints) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc) as chan:
        grpc.channel_ready_future(chan).result(timeout=TIMEOUT)
        yield chan


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("digits")
    return data.test.x, data.test.y


def predict_request(model: str, batch: np.ndarray, **spec: Any) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        target = request.model_spec.version if key == "version" else request.model_spec
        setattr(target, "value" if key == "version" else key, value)
    request.inputs["input"].CopyFrom(tf.make_tensor_proto(batch))
    return request


def chunks(x: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), CHUNK):
        yield x[start : start + CHUNK]


def grpc_classes(stub: Any, model: str, x: np.ndarray) -> np.ndarray:
    parts = []
    for batch in chunks(x):
        reply = stub.Predict(predict_request(model, batch), timeout=TIMEOUT)
        parts.append(tf.make_ndarray(reply.outputs["class"]))
    return np.concatenate(parts)


def rest_classes(http: httpx.Client, model: str, x: np.ndarray, row: bool) -> np.ndarray:
    parts = []
    for batch in chunks(x):
        body = {"instances": batch.tolist()} if row else {"inputs": {"input": batch.tolist()}}
        reply = http.post(f"/v1/models/{model}:predict", json=body)
        assert reply.status_code == 200, reply.text
        data = reply.json()
        if row:
            parts.append([p["class"] for p in data["predictions"]])
        else:
            parts.append(data["outputs"]["class"])
    return np.concatenate(parts)


def test_large_requests_are_split_into_execution_batches(
    trained_store: Path, http: httpx.Client, digits: Any
) -> None:
    x = to_model_input(digits[0], "mlp")
    expected = load_predictor(trained_store / "tensorflow" / "digits-mlp" / "1")(x)["class"]
    reply = http.post("/v1/models/digits-mlp:predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    np.testing.assert_array_equal(reply.json()["outputs"]["class"], expected)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_grpc_and_rest_agree_with_the_savedmodel_in_process(
    arch: str, trained_store: Path, http: httpx.Client, channel: grpc.Channel, digits: Any
) -> None:
    model = f"digits-{arch}"
    x = to_model_input(digits[0], arch)
    expected = load_predictor(trained_store / "tensorflow" / model / "1")(x)["class"]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    np.testing.assert_array_equal(grpc_classes(stub, model, x), expected)
    np.testing.assert_array_equal(rest_classes(http, model, x, row=True), expected)
    np.testing.assert_array_equal(rest_classes(http, model, x, row=False), expected)
    assert np.mean(expected == digits[1]) > 0.9


def test_status_and_metadata_over_rest_and_grpc(http: httpx.Client, channel: grpc.Channel) -> None:
    assert http.get("/v1/models/digits-mlp").json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    meta = http.get("/v1/models/digits-mlp/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "digits-mlp", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["input"]["tensor_shape"]["dim"]] == ["-1", "64"]
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits-cnn"
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, timeout=TIMEOUT
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def["serving_default"].outputs) == {"class", "probabilities"}
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "digits-cnn"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=TIMEOUT
    )
    assert status.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


GOOD_ROW = [0.0] * 64


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (
            "nope:predict",
            {"instances": [GOOD_ROW]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "digits-mlp/versions/9:predict",
            {"instances": [GOOD_ROW]},
            404,
            "Servable not found for request: Specific(digits-mlp, 9)",
        ),
        ("digits-mlp:predict", {"instances": [[1.0, 2.0]]}, 400, "expected shape [-1, 64]"),
        (
            "digits-mlp:predict",
            {"instances": [["a"] * 64]},
            400,
            "input 'input': expected DT_FLOAT",
        ),
        ("digits-mlp:predict", {"inputs": {"pixels": [GOOD_ROW]}}, 400, "Sent extra: {pixels}"),
        ("digits-mlp:predict", b'{"instances": [[1.0,', 400, "JSON Parse error"),
    ],
)
def test_rest_errors_have_tf_serving_status_and_a_message(
    http: httpx.Client, path: str, body: Any, status: int, needle: str
) -> None:
    if isinstance(body, bytes):
        reply = http.post(f"/v1/models/{path}", content=body)
    else:
        reply = http.post(f"/v1/models/{path}", json=body)
    assert reply.status_code == status
    assert needle in reply.json()["error"]


def test_rest_status_errors(http: httpx.Client) -> None:
    reply = http.get("/v1/models/nope")
    assert (reply.status_code, reply.json()) == (
        404,
        {"error": "Could not find any versions of model nope"},
    )
    assert http.get("/v1/models/digits-mlp/versions/9").status_code == 404
    assert http.get("/v2/whatever").status_code == 404


@pytest.mark.parametrize(
    ("model", "batch", "spec", "code", "needle"),
    [
        ("nope", np.zeros((1, 64), np.float32), {}, grpc.StatusCode.NOT_FOUND, "Latest(nope)"),
        (
            "digits-mlp",
            np.zeros((1, 64), np.float32),
            {"version": 7},
            grpc.StatusCode.NOT_FOUND,
            "Specific(digits-mlp, 7)",
        ),
        (
            "digits-mlp",
            np.zeros((1, 10), np.float32),
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "[1, 10]",
        ),
        ("digits-mlp", np.zeros((1, 64)), {}, grpc.StatusCode.INVALID_ARGUMENT, "float64"),
    ],
)
def test_grpc_errors_have_tf_serving_codes(
    channel: grpc.Channel, model: str, batch: np.ndarray, spec: dict, code: Any, needle: str
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(predict_request(model, batch, **spec), timeout=TIMEOUT)
    assert caught.value.code() == code
    assert needle in caught.value.details()


def test_grpc_wrong_input_name_and_output_filter(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits-mlp"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 64), np.float32)))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing but required: {input}" in caught.value.details()
    request = predict_request("digits-mlp", np.zeros((2, 64), np.float32))
    request.output_filter.append("class")
    reply = stub.Predict(request, timeout=TIMEOUT)
    assert list(reply.outputs) == ["class"]
    assert reply.model_spec.version.value == 1


def metric_samples(text: str, name: str) -> list[Any]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return list(families[name].samples) if name in families else []


def test_concurrent_requests_are_batched_and_metrics_show_it(
    server: TFServingEndpoints, channel: grpc.Channel, http: httpx.Client
) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    one_row = predict_request("digits-cnn", np.ones((1, 8, 8, 1), np.float32))
    name = ":tensorflow:serving:batching_session:processed_batch_size"
    batched = False
    for _ in range(5):  # concurrency on a shared 2-core machine is likely, not certain
        with ThreadPoolExecutor(32) as pool:
            replies = list(pool.map(lambda _: stub.Predict(one_row, timeout=TIMEOUT), range(64)))
        assert all(tf.make_ndarray(r.outputs["class"]).shape == (1,) for r in replies)
        samples = metric_samples(http.get(server.metrics).text, name)
        count = sum(s.value for s in samples if s.name.endswith("_count"))
        singles = sum(s.value for s in samples if s.labels.get("le") == "1.0")
        if count > singles:
            batched = True
            break
    assert batched, "no batch larger than 1 was recorded"


def test_metrics_page_parses_with_tf_serving_names(server: TFServingEndpoints) -> None:
    text = httpx.get(server.metrics, timeout=TIMEOUT).text
    requests = metric_samples(text, ":tensorflow:serving:request_count")
    assert any(s.labels == {"model_name": "digits-mlp", "status": "OK"} for s in requests)
    assert any(s.labels["status"] == "NOT_FOUND" for s in requests)
    latency = metric_samples(text, ":tensorflow:serving:request_latency")
    assert {s.labels.get("entrypoint") for s in latency} >= {"REST", "GRPC"}
    loads = metric_samples(text, ":tensorflow:cc:saved_model:load_attempt_count")
    assert sum(s.value for s in loads if s.labels["status"] == "success") == 2


def test_launcher_records_the_running_server(server: TFServingEndpoints, run_dir: Path) -> None:
    status = tfserving_status(run_dir)
    assert status is not None
    assert (status["pid"], status["grpc"], status["metrics"]) == (
        server.pid,
        server.grpc,
        server.metrics,
    )
    assert status["models"] == ["digits-cnn", "digits-mlp"]
    assert server.binary in ("bundled", "tensorflow_model_server")
    assert (run_dir / "models.config").is_file() and (run_dir / "tfserving.log").is_file()


# ---- version hot-swap, on a private copy of the store ----


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_new_version_is_served_without_restart_and_removal_rolls_back(
    trained_store: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained_store, store)
    run_dir = tmp_path / "run"
    for endpoints in launch(store, run_dir, poll_wait_seconds=1):
        status = tfserving_status(run_dir)
        assert status is not None and status["pid"] == endpoints.pid
        assert status["rest"] == endpoints.rest
        swap_and_roll_back(endpoints, store / "tensorflow" / "digits-mlp")
    assert tfserving_status(run_dir) is None


def swap_and_roll_back(endpoints: TFServingEndpoints, model_dir: Path) -> None:
    failures: list[str] = []
    stop = threading.Event()
    with grpc.insecure_channel(endpoints.grpc) as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        request = predict_request("digits-mlp", np.zeros((1, 64), np.float32))

        def served_version() -> int:
            return int(stub.Predict(request, timeout=TIMEOUT).model_spec.version.value)

        def hammer() -> None:  # in-flight traffic during both switches must never fail
            while not stop.is_set():
                try:
                    served_version()
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code()}: {exc.details()}")

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            staging = model_dir / "incoming"  # copy, then rename: the poller never sees half
            shutil.copytree(model_dir / "1", staging)
            staging.rename(model_dir / "2")
            wait_for(lambda: served_version() == 2)
            shutil.rmtree(model_dir / "2")
            wait_for(lambda: served_version() == 1)
        finally:
            stop.set()
            worker.join(timeout=TIMEOUT)
    assert failures == []
    with httpx.Client(base_url=endpoints.rest, timeout=TIMEOUT) as http:
        states = {
            s["version"]: s["state"]
            for s in http.get("/v1/models/digits-mlp").json()["model_version_status"]
        }
    assert states == {"1": "AVAILABLE", "2": "END"}
