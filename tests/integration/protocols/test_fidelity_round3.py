"""Fidelity round 3 against a launched stack (issue 25): what tritonclient and
tensorflow-serving-api clients meet beyond predict, on both arms.

Truths: the direct backend answers (`direct_outputs`) with a numpy top-k for the
classification extension; the TF server answered directly (its REST and gRPC mirror TF
Serving's texts) for error texts and HEAD; the requests this module sent for statistics.
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_http_aio
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.integration.direct import direct_outputs
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow
MODEL = "digits-mlp"
ARMS = ("tensorflow", "pytorch")
K = 3


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:8], "mlp")


@pytest.fixture(scope="module")
def direct(stack: dict[str, Any], x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    return direct_outputs(stack, MODEL, x)


def top_k(scores: np.ndarray, k: int) -> list[list[bytes]]:
    """Per row, the k highest scores as b"score:index" (`%f`, C's std::to_string)."""
    rows = []
    for row in scores:
        order = sorted(range(row.size), key=lambda i: (-row[i], i))[:k]
        rows.append([b"%f:%d" % (row[i], i) for i in order])
    return rows


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Same classes in the same order, scores equal to the printed precision."""
    assert got.shape == (want.shape[0], K)
    for got_row, want_row in zip(got.tolist(), top_k(want, K), strict=True):
        got_pairs = [bytes(v).split(b":") for v in got_row]
        want_pairs = [v.split(b":") for v in want_row]
        assert [p[1] for p in got_pairs] == [p[1] for p in want_pairs]
        np.testing.assert_allclose(
            [float(p[0]) for p in got_pairs], [float(p[0]) for p in want_pairs], atol=2e-6
        )


def _rest(stack: dict[str, Any]) -> str:
    return str(stack["gateway"]["rest"]).removeprefix("http://")


# --- classification over tritonclient http, http.aio, grpc, grpc.aio


@pytest.mark.parametrize("arm", ARMS)
def test_class_count_over_http_and_grpc(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    http = triton_http.InferenceServerClient(url=_rest(stack), network_timeout=30)
    rpc = triton_grpc.InferenceServerClient(url=stack["gateway"]["grpc"])
    try:
        for client, module in ((http, triton_http), (rpc, triton_grpc)):
            tensor = module.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            outputs = [module.InferRequestedOutput("probabilities", class_count=K)]
            result = client.infer(MODEL, [tensor], outputs=outputs, headers={"x-backend": arm})
            _close(result.as_numpy("probabilities"), direct[arm]["probabilities"])
    finally:
        http.close()
        rpc.close()


@pytest.mark.parametrize("arm", ARMS)
def test_class_count_over_http_aio_and_grpc_aio(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    async def run() -> list[np.ndarray]:
        http = triton_http_aio.InferenceServerClient(url=_rest(stack))
        rpc = triton_grpc_aio.InferenceServerClient(url=stack["gateway"]["grpc"])
        got = []
        try:
            for client, module in ((http, triton_http_aio), (rpc, triton_grpc_aio)):
                tensor = module.InferInput("input", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                outputs = [module.InferRequestedOutput("probabilities", class_count=K)]
                result = await client.infer(
                    MODEL, [tensor], outputs=outputs, headers={"x-backend": arm}
                )
                got.append(result.as_numpy("probabilities"))
        finally:
            await http.close()
            await rpc.close()
        return got

    for got in asyncio.run(run()):
        _close(got, direct[arm]["probabilities"])


def test_server_metadata_lists_the_extensions(stack: dict[str, Any]) -> None:
    http = triton_http.InferenceServerClient(url=_rest(stack))
    rpc = triton_grpc.InferenceServerClient(url=stack["gateway"]["grpc"])
    try:
        want = {"classification", "statistics", "model_configuration"}
        assert want <= set(http.get_server_metadata()["extensions"])
        assert want <= set(rpc.get_server_metadata(as_json=True)["extensions"])
        # Triton's ModelReady: an unknown version is not ready, and no error
        assert http.is_model_ready(MODEL, "999") is False
        assert rpc.is_model_ready(MODEL, "999") is False
        assert rpc.is_model_ready(MODEL) is True
    finally:
        http.close()
        rpc.close()


# --- stream inference and statistics


@pytest.mark.parametrize("arm", ARMS)
def test_stream_inference_with_tritonclient(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    client = triton_grpc.InferenceServerClient(url=stack["gateway"]["grpc"])
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    try:
        client.start_stream(
            callback=lambda result, error: answers.put((result, error)),
            headers={"x-backend": arm},
        )
        for request_id, model in (("a", MODEL), ("b", "nope"), ("c", MODEL)):
            tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            client.async_stream_infer(model, [tensor], request_id=request_id)
        got = [answers.get(timeout=60) for _ in range(3)]
        client.stop_stream()
    finally:
        client.close()
    results = {r.get_response().id: r for r, e in got if e is None}
    errors = [str(e) for r, e in got if e is not None]
    assert sorted(results) == ["a", "c"] and errors == ["unknown model 'nope'"]
    for result in results.values():
        np.testing.assert_array_equal(result.as_numpy("class"), direct[arm]["class"])


def test_statistics_count_the_requests_sent(stack: dict[str, Any], x: np.ndarray) -> None:
    """perf_analyzer reads the statistics before and after its load: the difference is
    exactly what was sent (successes, batch rows), over REST and gRPC alike."""
    http = triton_http.InferenceServerClient(url=_rest(stack))
    rpc = triton_grpc.InferenceServerClient(url=stack["gateway"]["grpc"])
    try:
        version = str(max(int(v) for v in http.get_model_metadata(MODEL)["versions"]))
        before = http.get_inference_statistics(MODEL, version)["model_stats"][0]
        for _ in range(3):
            tensor = triton_http.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            http.infer(MODEL, [tensor])
        after = http.get_inference_statistics(MODEL, version)["model_stats"][0]
        over_grpc = rpc.get_inference_statistics(MODEL, version, as_json=True)["model_stats"][0]
        config = rpc.get_model_config(MODEL, as_json=True)["config"]
        index = http.get_model_repository_index()
    finally:
        http.close()
        rpc.close()
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 3
    assert after["inference_count"] - before["inference_count"] == 3 * len(x)
    assert after["execution_count"] - before["execution_count"] == 3
    assert after["inference_stats"]["compute_infer"]["ns"] <= success["ns"]
    assert int(over_grpc["inference_stats"]["success"]["count"]) == success["count"]
    assert config["name"] == MODEL and config["input"][0]["dims"] == ["64"]
    assert MODEL in {m["name"] for m in index} and {m["state"] for m in index} == {"READY"}


# --- TF Serving: Classify / Regress / MultiInference, texts and HEAD, against the TF server


def _tf_error(address: str, method: str, request: Any) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            getattr(stub, method)(request, timeout=30)
    return error.value


def test_classify_regress_multi_inference_answer_as_tf_serving(stack: dict[str, Any]) -> None:
    """The TF server's REST `:classify`/`:regress` sentence (TF Serving's), over the
    gateway's gRPC; never UNIMPLEMENTED."""
    for api, method, request_type in (
        ("classify", "Classify", classification_pb2.ClassificationRequest),
        ("regress", "Regress", regression_pb2.RegressionRequest),
    ):
        straight = httpx.post(
            f"{stack['tensorflow']['rest']}/v1/models/{MODEL}:{api}",
            json={"examples": [{"x": 1.0}]},
            timeout=30,
        )
        request = request_type()
        request.model_spec.name = MODEL
        error = _tf_error(stack["gateway"]["grpc"], method, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert (straight.status_code, error.details()) == (400, straight.json()["error"])  # type: ignore[attr-defined]
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add(method_name="tensorflow/serving/classify")
    task.model_spec.name = MODEL
    error = _tf_error(stack["gateway"]["grpc"], "MultiInference", request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "Expected classification signature method_name" in error.details()  # type: ignore[attr-defined]


def test_unknown_output_filter_and_version_zero_as_the_tf_server(
    stack: dict[str, Any], x: np.ndarray
) -> None:
    import tensorflow as tf

    def predict(address: str, **spec: Any) -> grpc.RpcError:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        if "version" in spec:
            request.model_spec.version.value = spec["version"]
        request.output_filter.extend(spec.get("output_filter", []))
        request.inputs["input"].CopyFrom(tf.make_tensor_proto(x))
        return _tf_error(address, "Predict", request)

    for spec in ({"output_filter": ["logits"]}, {"version": 0}, {"version": 999}):
        via, straight = (
            predict(stack["gateway"]["grpc"], **spec),
            predict(stack["tensorflow"]["grpc"], **spec),
        )
        assert (via.code(), via.details()) == (straight.code(), straight.details()), spec  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{MODEL}/versions/abc:predict",
        f"/v1/models/{MODEL}/versions/0:predict",
        f"/v1/models/{MODEL}/versions/0",
        f"/v1/models/{MODEL}/versions/0/metadata",
    ],
)
def test_tf_rest_version_texts_as_the_tf_server(
    stack: dict[str, Any], x: np.ndarray, path: str
) -> None:
    method = "POST" if path.endswith(":predict") else "GET"
    body = {"instances": x[:1].tolist()} if method == "POST" else None
    replies = [
        httpx.request(method, f"{base}{path}", json=body, timeout=30)
        for base in (stack["gateway"]["rest"], stack["tensorflow"]["rest"])
    ]
    assert [(r.status_code, r.json()) for r in replies[:1]] == [
        (r.status_code, r.json()) for r in replies[1:]
    ]


@pytest.mark.parametrize(
    "path",
    [f"/v1/models/{MODEL}", f"/v1/models/{MODEL}/metadata", "/v2", "/v2/health/ready",
     f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/config"],
)  # fmt: skip
def test_head_where_get_is_served(stack: dict[str, Any], path: str) -> None:
    base = stack["gateway"]["rest"]
    get, head = httpx.get(f"{base}{path}", timeout=30), httpx.head(f"{base}{path}", timeout=30)
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    # (TF Serving and the bundled server answer HEAD 404 "Malformed request": the gateway
    # follows RFC 9110 here, a documented difference)
