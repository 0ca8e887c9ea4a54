"""Fidelity round 3, in process with fake upstreams: what tritonclient and TF Serving
clients meet beyond predict (issue 25).

References: RFC 9110 §9.3.2 (HEAD), TF Serving's texts as the bundled server mirrors them
(`backends/tfserving/server/errors.py`, `rest.py`, `signature.py`), Triton's
`InferenceServer::ModelIsReady` (unknown model or version: ready false) and
tritonclient's own request writer and reader, run in the clients' own venv
(`tests.triton_clients`), against the in-process app (TestClient) and its gRPC ingress on a
loopback port.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from google.protobuf import message_factory

from gateway._proto import oip
from gateway._proto import tfserving as tfs
from gateway.app import create_app
from gateway.core.errors import UpstreamUnavailable
from gateway.protocols.grpc import oip_stream
from tests.triton_clients import TritonClientError, call, client_methods
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for, toy_outputs
from tests.unit.protocols.test_grpc_ingress import infer_request, running

Code = grpc.StatusCode
ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def _concrete(path: str) -> str:
    for name, value in (("{model:tfname}", "toy"), ("{model}", "toy"), ("{version}", "1")):
        path = path.replace(name, value)
    return re.sub(r"{[^}]*}", "x", path)  # other resources: unknown, 404 both ways


def test_head_answers_as_get_without_a_body(client: TestClient) -> None:
    """RFC 9110 §9.3.2: same status and headers as GET, no content."""
    paths = {
        route.path
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if route.path and route.methods and "GET" in route.methods
    }
    assert {"/v2/health/live", "/v1/models/{model:tfname}", "/readyz"} <= paths
    for path in sorted(paths):
        if path == "/metrics":
            continue  # its length changes between two calls
        url = _concrete(path)
        got, head = client.get(url, headers=ADMIN), client.head(url, headers=ADMIN)
        assert head.status_code == got.status_code, url
        assert head.content == b"", url
        assert head.headers["content-type"] == got.headers["content-type"], url
        assert head.headers["content-length"] == got.headers["content-length"], url


def test_head_is_listed_in_allow_but_not_in_the_document(client: TestClient) -> None:
    reply = client.post("/v2/health/live")
    assert reply.status_code == 405 and reply.headers["Allow"] == "GET, HEAD"
    doc = client.get("/openapi.json").json()
    assert not any("head" in ops for ops in doc["paths"].values())
    assert all(
        not isinstance(r, APIRoute) or r.methods != {"HEAD"} or not r.include_in_schema
        for r in client.app.routes  # type: ignore[attr-defined]
    )


# --- TF Serving's texts: its URL pattern takes `\d+` versions (abc matches no route:
# "Malformed request"), and version 0 is a servable it does not have.


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (
            "/v1/models/toy/versions/abc:predict",
            404,
            "Malformed request: POST /v1/models/toy/versions/abc:predict",
        ),
        (
            "/v1/models/toy/versions/0:predict",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
        (
            "/v1/models/toy/versions/9:predict",
            404,
            "Servable not found for request: Specific(toy, 9)",
        ),
        (
            "/v1/models/toy/versions/0:classify",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
    ],
)
def test_tf_rest_version_texts(client: TestClient, path: str, status: int, error: str) -> None:
    body = {"instances": [[1, 2, 3, 4]], "examples": [{}]}
    reply = client.post(path, json=body)
    assert (reply.status_code, reply.json()) == (status, {"error": error})


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/models/toy/versions/abc", 404, "Malformed request: GET /v1/models/toy/versions/abc"),
        ("/v1/models/toy/versions/0", 404, "Could not find version 0 of model toy"),
        (
            "/v1/models/toy/versions/0/metadata",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
    ],
)
def test_tf_rest_status_and_metadata_version_texts(
    client: TestClient, path: str, status: int, error: str
) -> None:
    reply = client.get(path)
    assert (reply.status_code, reply.json()) == (status, {"error": error})


def test_json_inputs_with_binary_outputs_are_served(client: TestClient) -> None:
    """tritonclient's body for JSON inputs and `binary_data_output`: no binary data follows,
    so no Inference-Header-Content-Length; the answer is binary."""
    x = np.array([[0, 5, 1, 2]], np.float32)
    tensor = {"name": "input", "datatype": "FP32", "array": x, "binary": False}
    for outputs in (None, [{"name": "class", "binary": True}]):
        request = call("encode_request", inputs=[tensor], outputs=outputs)
        assert request["json_size"] is None
        reply = client.post("/v2/models/toy/infer", content=request["body"])
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/octet-stream"
        length = int(reply.headers["Inference-Header-Content-Length"])
        assert np.frombuffer(reply.content[length:][-8:], np.int64).tolist() == [1]


# --- the classification extension (Triton, docs/protocol/extension_classification.md):
# tritonclient writes the request and reads the answer; the truth is numpy's top-k of the
# scores the fake upstream returns, written as C's `std::to_string(float)` does (`%f`).

X = np.array([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 1.0]], dtype=np.float32)


def top_k(scores: np.ndarray, k: int) -> list[list[bytes]]:
    """The independent truth: per row, the k highest scores as b"score:index"."""
    rows = []
    for row in scores:
        order = sorted(range(row.size), key=lambda i: (-row[i], i))[:k]
        rows.append([b"%f:%d" % (row[i], i) for i in order])
    return rows


@pytest.mark.parametrize("binary", [True, False])
def test_http_classification_with_tritonclient(client: TestClient, binary: bool) -> None:
    tensor = {"name": "input", "datatype": "FP32", "array": X, "binary": binary}
    outputs = [
        {"name": "probabilities", "binary": binary, "class_count": 2},
        {"name": "class", "binary": binary},
    ]
    request = call("encode_request", inputs=[tensor], outputs=outputs)
    json_size = request["json_size"]
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    reply = client.post("/v2/models/toy/infer", content=request["body"], headers=headers)
    assert reply.status_code == 200, reply.text
    length = reply.headers.get("Inference-Header-Content-Length")
    result = call(
        "decode_response", body=reply.content, want=["probabilities", "class"],
        header_length=None if length is None else int(length),
    )  # fmt: skip
    got = result["outputs"]["probabilities"]
    assert got.shape == (2, 2) and result["described"]["probabilities"]["datatype"] == "BYTES"
    want = top_k(toy_outputs(X)["probabilities"], 2)
    assert [[bytes(v) if binary else v.encode() for v in row] for row in got.tolist()] == want
    np.testing.assert_array_equal(result["outputs"]["class"], toy_outputs(X)["class"])


def test_k_over_the_classes_gives_every_class(client: TestClient) -> None:
    body = {
        "inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 99}}],
    }
    reply = client.post("/v2/models/toy/infer", json=body)
    out = reply.json()["outputs"][0]
    classes = toy_outputs(X)["probabilities"].shape[1]
    assert out["shape"] == [2, classes]
    rows = top_k(toy_outputs(X)["probabilities"], 99)
    assert [s.encode() for s in out["data"]] == rows[0] + rows[1]


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (
            {"name": "class", "parameters": {"classification": 2}},
            "output 'class': classification needs a [batch, classes] score tensor; "
            "class is INT64 [-1]",
        ),
        (
            {"name": "probabilities", "parameters": {"classification": 0}},
            "output 'probabilities': parameter 'classification' must be a positive integer",
        ),
        (
            {"name": "probabilities", "parameters": {"classification": True}},
            "output 'probabilities': parameter 'classification' must be a positive integer",
        ),
        (
            {"name": "logits", "parameters": {"classification": 2}},
            "unknown output 'logits'; toy returns ['class', 'probabilities']",
        ),
    ],
)
def test_classification_refusals_never_reach_a_backend(
    tmp_path: Path, output: dict[str, object], error: str
) -> None:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    body = {
        "inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}
        ],
        "outputs": [output],
    }
    with TestClient(app) as c:
        reply = c.post("/v2/models/toy/infer", json=body)
    assert (reply.status_code, reply.json()) == (400, {"error": error})
    assert not any(u.calls for u in upstreams.values())


@pytest.mark.parametrize("raw", [True, False])
def test_grpc_classification_with_tritonclient(tmp_path: Path, raw: bool) -> None:
    """tritonclient.grpc sets `parameters["classification"].int64_param`; the answer is
    `bytes_contents` for typed inputs and raw contents for raw ones, as Triton does."""
    request = infer_request(X, raw=raw)
    for name, k in (("probabilities", 3), ("class", 0)):
        output = request.outputs.add(name=name)
        if k:
            output.parameters["classification"].int64_param = k
    with running(tmp_path) as gw:
        reply, _ = gw.infer(request)
        bad = infer_request(X)
        bad.outputs.add(name="class").parameters["classification"].int64_param = 1
        with pytest.raises(grpc.RpcError) as error:
            gw.infer(bad)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    want = ["probabilities", "class"] if raw else ["probabilities"]
    result = call("decode_grpc_response", message=reply.SerializeToString(), want=want)
    got = result["outputs"]["probabilities"]
    assert reply.outputs[0].datatype == "BYTES" and got.shape == (2, 3)
    assert bool(reply.raw_output_contents) is raw
    assert [[bytes(v) for v in row] for row in got.tolist()] == top_k(
        toy_outputs(X)["probabilities"], 3
    )
    classes = result["outputs"]["class"] if raw else reply.outputs[1].contents.int64_contents
    np.testing.assert_array_equal(classes, toy_outputs(X)["class"])  # (tritonclient reads
    # typed contents of BYTES only)


def test_both_metadata_list_the_extension(client: TestClient, tmp_path: Path) -> None:
    assert "classification" in client.get("/v2").json()["extensions"]
    with running(tmp_path / "grpc") as gw:
        reply, _ = gw.call(
            f"/{oip.SERVICE}/ServerMetadata",
            oip.ServerMetadataRequest(),
            oip.ServerMetadataResponse,
        )
    assert "classification" in reply.extensions


# --- TF Serving's Classify / Regress / MultiInference for a predict-only signature: TF
# Serving's texts (classifier.cc, regressor.cc, multi_inference.cc), and the same sentence
# as the REST :classify / :regress routes answer.

CLASSIFY = "/tensorflow.serving.PredictionService/Classify"
REGRESS = "/tensorflow.serving.PredictionService/Regress"
MULTI = "/tensorflow.serving.PredictionService/MultiInference"


def _spec(message: Any, model: str = "toy", **fields: Any) -> Any:
    message.model_spec.name = model
    for key, value in fields.items():
        if key == "version":
            message.model_spec.version.value = value
        else:
            setattr(message.model_spec, key, value)
    return message


def _grpc_error(gw: Any, path: str, request: Any, response_type: Any) -> Any:
    with pytest.raises(grpc.RpcError) as error:
        gw.call(path, request, response_type)
    return error.value


@pytest.mark.parametrize(
    ("api", "path", "request_type", "response_type"),
    [
        ("classify", CLASSIFY, tfs.ClassificationRequest, tfs.ClassificationResponse),
        ("regress", REGRESS, tfs.RegressionRequest, tfs.RegressionResponse),
    ],
)
def test_classify_and_regress_answer_as_tf_serving(
    tmp_path: Path, client: TestClient, api: str, path: str, request_type: Any, response_type: Any
) -> None:
    kind = {"classify": "classification", "regress": "regression"}[api]
    method_error = (
        f"Expected {kind} signature method_name to be tensorflow/serving/{api}. "
        "Was: tensorflow/serving/predict"
    )
    rest = client.post(f"/v1/models/toy:{api}", json={"examples": [{"x": 1.0}]})
    assert (rest.status_code, rest.json()) == (400, {"error": method_error})
    cases = [
        (_spec(request_type()), Code.INVALID_ARGUMENT, method_error),
        (request_type(), Code.INVALID_ARGUMENT, "Missing ModelSpec"),
        (
            _spec(request_type(), version=9),
            Code.NOT_FOUND,
            "Servable not found for request: Specific(toy, 9)",
        ),
        (
            _spec(request_type(), signature_name="other"),
            Code.INVALID_ARGUMENT,
            "No signature was found with the name: other",
        ),
    ]
    with running(tmp_path / "grpc") as gw:
        for request, code, text in cases:
            error = _grpc_error(gw, path, request, response_type)
            assert (error.code(), error.details()) == (code, text)
        assert not any(u.calls for u in gw.upstreams.values())


def _task(request: Any, method: str, model: str = "toy", signature: str = "") -> None:
    task = request.tasks.add(method_name=method)
    task.model_spec.name = model
    task.model_spec.signature_name = signature


def test_multi_inference_answers_as_tf_serving(tmp_path: Path) -> None:
    classify, regress = "tensorflow/serving/classify", "tensorflow/serving/regress"
    cases: list[tuple[list[tuple[str, str, str]], grpc.StatusCode, str]] = [
        (
            [("toy", classify, "")],
            Code.INVALID_ARGUMENT,
            "Expected classification signature method_name to be tensorflow/serving/classify. "
            "Was: tensorflow/serving/predict",
        ),
        (
            [("toy", regress, "")],
            Code.INVALID_ARGUMENT,
            "Expected regression signature method_name to be tensorflow/serving/regress. "
            "Was: tensorflow/serving/predict",
        ),
        (
            [("toy", "tensorflow/serving/predict", "")],
            Code.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            [("toy", regress, "other")],
            Code.INVALID_ARGUMENT,
            "Requested signature not found in model graph: other",
        ),
        # tasks are checked in order: the first fails before a second is looked at
        (
            [("toy", classify, "x"), ("nope", regress, "x")],
            Code.INVALID_ARGUMENT,
            "Requested signature not found in model graph: x",
        ),
        ([], Code.NOT_FOUND, "unknown model ''"),
        ([("nope", classify, "")], Code.NOT_FOUND, "unknown model 'nope'"),
    ]
    with running(tmp_path) as gw:
        for tasks, code, text in cases:
            request = tfs.MultiInferenceRequest()
            for model, method, signature in tasks:
                _task(request, method, model, signature)
            error = _grpc_error(gw, MULTI, request, tfs.MultiInferenceResponse)
            assert (error.code(), error.details()) == (code, text), tasks


def test_reflection_lists_only_methods_that_answer(tmp_path: Path) -> None:
    """Every PredictionService method reflection describes answers something other than
    UNIMPLEMENTED for an empty request."""
    service = tfs._POOL.FindServiceByName("tensorflow.serving.PredictionService")
    with running(tmp_path) as gw:
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)()
            response = message_factory.GetMessageClass(method.output_type)
            path = f"/{service.full_name}/{method.name}"
            try:
                gw.call(path, request, response)
            except grpc.RpcError as error:
                assert error.code() != Code.UNIMPLEMENTED, method.name  # type: ignore[attr-defined]


# --- statistics, model configuration, repository index (Triton's extensions): the
# figures follow from the requests sent (counts, batch rows, ordering of durations).


def _v2_body(rows: int) -> dict[str, Any]:
    x = np.zeros((rows, 4), np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }


def test_statistics_count_what_the_router_answered(client: TestClient) -> None:
    for rows in (2, 3):
        assert (
            client.post("/v2/models/toy/versions/1/infer", json=_v2_body(rows)).status_code == 200
        )
    upstream = client.app.state.gateway.router.upstreams  # type: ignore[attr-defined]
    for limited in upstream.values():  # LimitedUpstream around each FakeUpstream
        limited.inner.fail_with = UpstreamUnavailable(limited.framework, "down")
    assert client.post("/v2/models/toy/versions/1/infer", json=_v2_body(1)).status_code == 503
    assert (
        client.post("/v2/models/toy/infer", json={"inputs": []}).status_code == 400
    )  # no model call
    stats = client.get("/v2/models/toy/versions/1/stats").json()["model_stats"]
    assert [s["version"] for s in stats] == ["1"]
    one = stats[0]
    assert (one["inference_count"], one["execution_count"]) == (5, 2)
    inference = one["inference_stats"]
    assert inference["success"]["count"] == 2 and inference["fail"]["count"] == 1
    for key in ("queue", "compute_infer", "compute_input", "compute_output"):
        assert inference[key]["count"] == 2
    assert inference["compute_infer"]["ns"] <= inference["success"]["ns"]
    assert (
        inference["queue"]["ns"] + inference["compute_infer"]["ns"]
        <= inference["success"]["ns"] + 2
    )
    assert one["last_inference"] > 0
    every = client.get("/v2/models/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in every] == [("toy", "1"), ("toy", "2")]
    assert every[1]["inference_count"] == 0
    assert client.get("/v2/models/toy/versions/9/stats").status_code == 404
    assert client.get("/v2/models/nope/stats").status_code == 404
    assert client.get("/v2/models/toy/versions/0/stats").status_code == 400


def test_model_config_and_repository_index_over_rest(client: TestClient) -> None:
    config = client.get("/v2/models/toy/config").json()
    assert config["name"] == "toy" and config["version_policy"] == {
        "specific": {"versions": [1, 2]}
    }
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [4]}]
    assert config["output"][1] == {
        "name": "class",
        "data_type": "TYPE_INT64",
        "dims": [1],
        "reshape": {"shape": []},
    }
    assert client.get("/v2/models/toy/versions/2/config").json() == config
    index = client.post("/v2/repository/index").json()
    assert index == [
        {"name": "toy", "version": v, "state": "READY", "reason": ""} for v in ("1", "2")
    ]
    assert client.post("/v2/repository/index", json={"ready": True}).json() == index
    assert client.post("/v2/repository/index", json={"ready": "yes"}).status_code == 400


def test_extensions_with_tritonclient_grpc(tmp_path: Path) -> None:
    """tritonclient.grpc's own calls: statistics, config, index, server metadata."""
    with running(tmp_path) as gw:
        gw.infer(infer_request(X))
        stats, config, index, metadata, missing = client_methods(
            "grpc",
            f"127.0.0.1:{gw.app.state.grpc_port}",
            ("get_inference_statistics", ["toy"], {"as_json": True}),
            ("get_model_config", ["toy", "1"], {"as_json": True}),
            ("get_model_repository_index", [], {"as_json": True}),
            ("get_server_metadata", [], {"as_json": True}),
            ("get_model_config", ["toy", "9"], {"as_json": True}),
        )
    assert isinstance(missing, TritonClientError)  # it raised InferenceServerException
    assert re.search("has no version 9", missing.text)
    config, index, extensions = config["config"], index["models"], metadata["extensions"]
    by_version = {s["version"]: s for s in stats["model_stats"]}
    assert by_version["2"]["inference_count"] == "2"  # proto JSON writes uint64 as text
    assert by_version["2"]["inference_stats"]["success"]["count"] == "1"
    assert "inference_count" not in by_version["1"]  # zero: proto JSON leaves it out
    assert config["max_batch_size"] == 4096 and config["input"][0]["data_type"] == "TYPE_FP32"
    assert [m["version"] for m in index] == ["1", "2"] and index[0]["state"] == "READY"
    assert {"classification", "statistics", "model_configuration"} <= set(extensions)


# --- ModelStreamInfer (Triton's stream_infer_handler.cc): each message answered on the
# stream, errors per message in `error_message`, the stream going on.


STREAM_INPUT = {"name": "input", "datatype": "FP32", "array": X}


def _stream(gw: Any, messages: list[dict[str, Any]], **start: Any) -> dict[str, Any]:
    """Send `messages` (async_stream_infer kwargs, `outputs` as {"name", "class_count"})
    on one tritonclient stream; the answers by request id (outputs by name, or the
    error's text)."""
    answer = call(
        "grpc_stream", url=f"127.0.0.1:{gw.app.state.grpc_port}", inputs=[STREAM_INPUT],
        messages=messages, want=["probabilities", "class"], start=start,
    )  # fmt: skip
    by_id: dict[str, Any] = {}
    for index, got in enumerate(answer["answers"]):
        if "error" in got:
            by_id[f"error-{index}"] = got["error"]
        else:
            by_id[got["id"]] = got["outputs"]
    return by_id


def test_stream_answers_each_message_and_errors_per_message(tmp_path: Path) -> None:
    messages: list[dict[str, Any]] = [
        {"model_name": "toy", "request_id": "a"},
        {
            "model_name": "toy",
            "request_id": "b",
            "outputs": [{"name": "probabilities", "class_count": 2}],
        },
        {"model_name": "nope", "request_id": "c"},
        {"model_name": "toy", "request_id": "d", "model_version": "9"},
        {"model_name": "toy", "request_id": "e"},
    ]
    with running(tmp_path) as gw:
        answers = _stream(gw, messages)
        calls = sum(len(u.calls) for u in gw.upstreams.values())
    want = toy_outputs(X)
    for key in ("a", "e"):
        np.testing.assert_allclose(answers[key]["probabilities"], want["probabilities"])
        np.testing.assert_array_equal(answers[key]["class"], want["class"])
    classes = [[bytes(v) for v in row] for row in answers["b"]["probabilities"].tolist()]
    assert classes == top_k(want["probabilities"], 2)
    errors = sorted(v for k, v in answers.items() if k.startswith("error-"))
    assert errors == ["model toy has no version 9", "unknown model 'nope'"]
    assert calls == 3


def test_stream_messages_carry_the_stream_deadline(tmp_path: Path) -> None:
    with running(tmp_path) as gw:
        _stream(gw, [{"model_name": "toy", "request_id": "a"}], stream_timeout=60)
        _stream(gw, [{"model_name": "toy", "request_id": "b"}])
        calls = sorted(
            (c for u in gw.upstreams.values() for c in u.calls), key=lambda c: c.request_id
        )
    assert calls[0].request_id == "a" and calls[0].deadline is not None
    assert calls[1].request_id == "b" and calls[1].deadline is None


def _count_concurrency(gw: Any) -> list[int]:
    """Wrap every fake upstream: the returned list holds [in flight now, most at once]."""
    seen = [0, 0]
    for upstream in gw.upstreams.values():
        inner = upstream.infer

        async def infer(request: Any, timeout: float, inner: Any = inner) -> Any:
            seen[0] += 1
            seen[1] = max(seen)
            try:
                return await inner(request, timeout)
            finally:
                seen[0] -= 1

        upstream.infer = infer
        upstream.delay = 0.05
    return seen


def test_stream_window_bounds_the_messages_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oip_stream, "STREAM_WINDOW", 2)
    with running(tmp_path) as gw:
        seen = _count_concurrency(gw)
        answers = _stream(gw, [{"model_name": "toy", "request_id": str(i)} for i in range(6)])
    assert sorted(answers) == [str(i) for i in range(6)]
    assert seen[1] == 2  # the window filled, and never overflowed


def test_stream_messages_pass_admission(tmp_path: Path) -> None:
    with running(tmp_path, admission={"max_in_flight": 1}) as gw:
        _count_concurrency(gw)
        answers = _stream(gw, [{"model_name": "toy", "request_id": str(i)} for i in range(4)])
        refused = gw.app.state.gateway.admission.counters.refused
    errors = [v for k, v in answers.items() if k.startswith("error-")]
    assert refused >= 1 and len(errors) == refused
    assert all("admission.max_in_flight" in e for e in errors)


def test_stream_without_credentials_is_refused(tmp_path: Path) -> None:
    with running(tmp_path, auth={"api_keys": ["k"]}) as gw:
        refused = _stream(gw, [{"model_name": "toy", "request_id": "a"}])
        calls = sum(len(u.calls) for u in gw.upstreams.values())
        ok = _stream(gw, [{"model_name": "toy", "request_id": "a"}], headers={"x-api-key": "k"})
    assert list(refused) == ["error-0"] and "UNAUTHENTICATED" in refused["error-0"]
    assert calls == 0 and list(ok) == ["a"]


def test_stream_with_tritonclient_aio(tmp_path: Path) -> None:
    messages = [{"model_name": "toy", "request_id": str(i)} for i in range(3)]
    with running(tmp_path) as gw:
        got = call(
            "grpc_aio_stream", url=f"127.0.0.1:{gw.app.state.grpc_port}",
            inputs=[STREAM_INPUT], messages=messages, want=[],
        )["answers"]  # fmt: skip
    assert sorted(a["id"] for a in got if "error" not in a) == ["0", "1", "2"]
