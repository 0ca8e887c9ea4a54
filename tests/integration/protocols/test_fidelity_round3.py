"""Fidelity round 3 against a launched stack (issue 25): what tritonclient and
tensorflow-serving-api clients meet beyond predict, on both arms.

Truths: the direct backend answers (`direct_outputs`) with a numpy top-k for the
classification extension; the TF server answered directly (its REST and gRPC mirror TF
Serving's texts) for error texts and HEAD; the requests this module sent for statistics.
tritonclient runs in the clients' own venv (`tests.triton_clients`).
"""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.integration.direct import direct_outputs
from tests.triton_clients import call, client_methods
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


def _class_count(
    stack: dict[str, Any], x: np.ndarray, arm: str, protocol: str, aio: bool
) -> np.ndarray:
    """tritonclient's infer (http or grpc, sync or aio) with `class_count=K` on the
    probabilities: the BYTES answer as tritonclient reads it."""
    url = _rest(stack) if protocol == "http" else stack["gateway"]["grpc"]
    result = call(
        f"{protocol}_infer", url=url, model=MODEL, aio=aio,
        inputs=[{"name": "input", "datatype": "FP32", "array": x}],
        outputs=[{"name": "probabilities", "class_count": K}], want=["probabilities"],
        headers={"x-backend": arm},
    )  # fmt: skip
    return np.asarray(result["outputs"]["probabilities"])


@pytest.mark.parametrize("arm", ARMS)
def test_class_count_over_http_and_grpc(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    for protocol in ("http", "grpc"):
        _close(_class_count(stack, x, arm, protocol, aio=False), direct[arm]["probabilities"])


@pytest.mark.parametrize("arm", ARMS)
def test_class_count_over_http_aio_and_grpc_aio(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    for protocol in ("http", "grpc"):
        _close(_class_count(stack, x, arm, protocol, aio=True), direct[arm]["probabilities"])


def test_server_metadata_lists_the_extensions(stack: dict[str, Any]) -> None:
    http_metadata, http_unknown_ready = client_methods(
        "http", _rest(stack),
        ("get_server_metadata", [], {}),
        ("is_model_ready", [MODEL, "999"], {}),
    )  # fmt: skip
    grpc_metadata, grpc_unknown_ready, grpc_ready = client_methods(
        "grpc", stack["gateway"]["grpc"],
        ("get_server_metadata", [], {"as_json": True}),
        ("is_model_ready", [MODEL, "999"], {}),
        ("is_model_ready", [MODEL], {}),
    )  # fmt: skip
    want = {"classification", "statistics", "model_configuration"}
    assert want <= set(http_metadata["extensions"])
    assert want <= set(grpc_metadata["extensions"])
    # Triton's ModelReady: an unknown version is not ready, and no error
    assert http_unknown_ready is False
    assert grpc_unknown_ready is False
    assert grpc_ready is True


# --- stream inference and statistics


@pytest.mark.parametrize("arm", ARMS)
def test_stream_inference_with_tritonclient(
    stack: dict[str, Any], x: np.ndarray, direct: dict[str, Any], arm: str
) -> None:
    messages = [
        {"model_name": model, "request_id": request_id}
        for request_id, model in (("a", MODEL), ("b", "nope"), ("c", MODEL))
    ]
    got = call(
        "grpc_stream", url=stack["gateway"]["grpc"], messages=messages, want=["class"],
        inputs=[{"name": "input", "datatype": "FP32", "array": x}],
        start={"headers": {"x-backend": arm}}, answer_timeout_s=60,
    )["answers"]  # fmt: skip
    results = {a["id"]: a["outputs"] for a in got if "error" not in a}
    errors = [a["error"] for a in got if "error" in a]
    assert sorted(results) == ["a", "c"] and errors == ["unknown model 'nope'"]
    for outputs in results.values():
        np.testing.assert_array_equal(outputs["class"], direct[arm]["class"])


def test_statistics_count_the_requests_sent(stack: dict[str, Any], x: np.ndarray) -> None:
    """perf_analyzer reads the statistics before and after its load: the difference is
    exactly what was sent (successes, batch rows), over REST and gRPC alike."""
    rest, rpc = _rest(stack), stack["gateway"]["grpc"]
    (metadata,) = client_methods("http", rest, ("get_model_metadata", [MODEL], {}))
    version = str(max(int(v) for v in metadata["versions"]))
    (before,) = client_methods("http", rest, ("get_inference_statistics", [MODEL, version], {}))
    before = before["model_stats"][0]
    tensor = {"name": "input", "datatype": "FP32", "array": x}
    call("http_infer", url=rest, model=MODEL, inputs=[tensor], want=[], repeat=3)
    after, index = client_methods(
        "http", rest,
        ("get_inference_statistics", [MODEL, version], {}),
        ("get_model_repository_index", [], {}),
    )  # fmt: skip
    after = after["model_stats"][0]
    over_grpc, config = client_methods(
        "grpc", rpc,
        ("get_inference_statistics", [MODEL, version], {"as_json": True}),
        ("get_model_config", [MODEL], {"as_json": True}),
    )  # fmt: skip
    over_grpc, config = over_grpc["model_stats"][0], config["config"]
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
