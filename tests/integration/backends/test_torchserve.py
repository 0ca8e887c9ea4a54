"""Real TorchServe 0.12 on loopback, started through the launcher on the trained store.

One server for the module (about 5 s to start); its teardown always stops it and checks
that the Java frontend and every Python worker are gone.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest
import torch

from backends.process import LaunchError, group_members
from backends.torchserve._proto import inference_pb2, inference_pb2_grpc
from backends.torchserve.launcher import (
    TorchServeEndpoints,
    read_token,
    start_torchserve,
    stop_torchserve,
    torchserve_status,
)
from trainers.architecture import to_model_input
from trainers.data import load_dataset

pytestmark = pytest.mark.slow

MODELS = ("digits-mlp", "digits-cnn")
TIMEOUT = 30.0  # seconds, for every call; nothing here may hang


@pytest.fixture(scope="module")
def server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TorchServeEndpoints]:
    run_dir = tmp_path_factory.mktemp("torchserve-run")
    endpoints = None
    try:
        endpoints = start_torchserve(trained_store, run_dir, timeout=120)
        yield endpoints
    finally:
        stopped = stop_torchserve(run_dir)
        if endpoints is not None:
            assert stopped
            assert not psutil.pid_exists(endpoints.pid) or (
                psutil.Process(endpoints.pid).status() == psutil.STATUS_ZOMBIE
            )
            assert group_members(endpoints.pid) == []
            assert not (run_dir / "key_file.json").exists()
            assert torchserve_status(run_dir) is None


@pytest.fixture(scope="module")
def auth(server: TorchServeEndpoints) -> dict[str, str]:
    return {"Authorization": f"Bearer {read_token(Path(server.token_file))}"}


@pytest.fixture(scope="module")
def http(server: TorchServeEndpoints) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.inference, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: TorchServeEndpoints) -> Iterator[inference_pb2_grpc.InferenceAPIsServiceStub]:
    with grpc.insecure_channel(server.grpc) as channel:
        yield inference_pb2_grpc.InferenceAPIsServiceStub(channel)


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    split = load_dataset("digits").test
    return split.x, split.y


def _expected_classes(store: Path, model: str, x: np.ndarray) -> np.ndarray:
    module = torch.jit.load(str(store / "torch" / model / "1" / "model.pt"))
    with torch.inference_mode():
        return module(torch.from_numpy(x))["class"].numpy()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _rest_classes(http: httpx.Client, auth: dict, model: str, x: np.ndarray, fmt: str) -> list:
    url = f"/predictions/{model}"
    if fmt == "row":
        reply = http.post(url, json={"instances": x.tolist()}, headers=auth)
        assert reply.status_code == 200, reply.text
        return [p["class"] for p in reply.json()["predictions"]]
    if fmt == "columnar":
        reply = http.post(url, json={"inputs": {"input": x.tolist()}}, headers=auth)
        assert reply.status_code == 200, reply.text
        return reply.json()["outputs"]["class"]
    headers = {**auth, "Content-Type": "application/x-npy"}
    reply = http.post(url, content=_npy(x), headers=headers)
    assert reply.status_code == 200, reply.text
    return np.load(io.BytesIO(reply.content))["class"].tolist()


def _grpc_request(model: str, body: bytes, version: str = "") -> inference_pb2.PredictionsRequest:
    return inference_pb2.PredictionsRequest(
        model_name=model, model_version=version, input={"data": body}
    )


def _metadata(server: TorchServeEndpoints) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {read_token(Path(server.token_file))}")]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fmt", ["row", "columnar", "npy"])
def test_rest_matches_torchscript(
    trained_store: Path, http: httpx.Client, auth: dict, test_set: tuple, model: str, fmt: str
) -> None:
    x = to_model_input(test_set[0], model.split("-")[1])
    expected = _expected_classes(trained_store, model, x)
    assert _rest_classes(http, auth, model, x, fmt) == expected.tolist()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("encoding", ["json", "npy"])
def test_grpc_matches_torchscript(
    trained_store: Path,
    server: TorchServeEndpoints,
    stub: inference_pb2_grpc.InferenceAPIsServiceStub,
    test_set: tuple,
    model: str,
    encoding: str,
) -> None:
    x = to_model_input(test_set[0], model.split("-")[1])
    body = _npy(x) if encoding == "npy" else json.dumps({"instances": x.tolist()}).encode()
    reply = stub.Predictions(
        _grpc_request(model, body), metadata=_metadata(server), timeout=TIMEOUT
    )
    if encoding == "npy":
        classes = np.load(io.BytesIO(reply.prediction))["class"].tolist()
    else:
        classes = [p["class"] for p in json.loads(reply.prediction)["predictions"]]
    assert classes == _expected_classes(trained_store, model, x).tolist()


def test_rest_without_token_is_refused(http: httpx.Client) -> None:
    # TorchServe 0.12 answers a missing or wrong token with 400 InvalidKeyException.
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        reply = http.post(
            "/predictions/digits-mlp", json={"instances": [[0] * 64]}, headers=headers
        )
        assert reply.status_code == 400
        assert reply.json()["type"] == "InvalidKeyException"
        assert "Token Authorization failed" in reply.json()["message"]


def test_grpc_without_token_is_refused(stub: inference_pb2_grpc.InferenceAPIsServiceStub) -> None:
    body = json.dumps({"instances": [[0] * 64]}).encode()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predictions(_grpc_request("digits-mlp", body), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "Token Authorization failed" in caught.value.details()


def test_management_api_needs_the_management_key(server: TorchServeEndpoints) -> None:
    inference_key = read_token(Path(server.token_file), "inference")
    management_key = read_token(Path(server.token_file), "management")
    url = f"{server.management}/models"
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {inference_key}"}, timeout=TIMEOUT)
    right = httpx.get(url, headers={"Authorization": f"Bearer {management_key}"}, timeout=TIMEOUT)
    assert wrong.status_code == 400 and right.status_code == 200
    assert sorted(m["modelName"] for m in right.json()["models"]) == sorted(MODELS)


BAD_REQUESTS = [
    ("unknown model", "/predictions/digits-nope", {"instances": [[0] * 64]}, 404, "digits-nope"),
    ("unknown version", "/predictions/digits-mlp/7", {"instances": [[0] * 64]}, 404, "version: 7"),
    (
        "wrong shape",
        "/predictions/digits-mlp",
        {"instances": [[0] * 63]},
        400,
        "input: expected shape [-1, 64], got [1, 63]",
    ),
    (
        "wrong dtype",
        "/predictions/digits-mlp",
        {"instances": [["a"] * 64]},
        400,
        "input': expected DT_FLOAT (float32) values but received strings",
    ),
    ("malformed JSON", "/predictions/digits-mlp", b"{not json", 400, "malformed JSON body"),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "message"), BAD_REQUESTS)
def test_rest_errors_name_the_problem(
    http: httpx.Client, auth: dict, case: str, path: str, body: object, status: int, message: str
) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = http.post(path, content=content, headers=headers)
    assert reply.status_code == status, case
    assert message in reply.json()["message"], case


def test_npy_wrong_dtype_is_a_400(http: httpx.Client, auth: dict) -> None:
    headers = {**auth, "Content-Type": "application/x-npy"}
    reply = http.post("/predictions/digits-mlp", content=_npy(np.ones((1, 64))), headers=headers)
    assert reply.status_code == 400
    assert "input: expected dtype float32, got float64" in reply.json()["message"]


GRPC_ERRORS = [
    ("digits-nope", "", b'{"instances": [[0]]}', grpc.StatusCode.INTERNAL, "digits-nope"),
    ("digits-mlp", "7", b'{"instances": [[0]]}', grpc.StatusCode.INTERNAL, "version: 7"),
    ("digits-mlp", "", b'{"instances": [[0]]}', grpc.StatusCode.INVALID_ARGUMENT, "shape"),
    ("digits-mlp", "", b"{not json", grpc.StatusCode.INVALID_ARGUMENT, "malformed JSON"),
]


@pytest.mark.parametrize(("model", "version", "body", "code", "message"), GRPC_ERRORS)
def test_grpc_errors(
    server: TorchServeEndpoints,
    stub: inference_pb2_grpc.InferenceAPIsServiceStub,
    model: str,
    version: str,
    body: bytes,
    code: grpc.StatusCode,
    message: str,
) -> None:
    # TorchServe 0.12 maps unknown models/versions to INTERNAL on gRPC (404 on REST).
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predictions(
            _grpc_request(model, body, version), metadata=_metadata(server), timeout=TIMEOUT
        )
    assert caught.value.code() == code
    assert message in caught.value.details()


def test_concurrent_requests_are_batched(http: httpx.Client, auth: dict) -> None:
    body = {"instances": [[0.0] * 64]}

    def burst(_: int) -> list[int]:
        sizes = []
        for _ in range(8):
            reply = http.post("/predictions/digits-mlp", json=body, headers=auth)
            assert reply.status_code == 200, reply.text
            sizes.append(int(reply.headers["X-Batch-Size"]))
        return sizes

    with ThreadPoolExecutor(max_workers=24) as pool:
        sizes = [size for result in pool.map(burst, range(24)) for size in result]
    assert len(sizes) == 24 * 8
    assert max(sizes) > 1
    assert max(sizes) <= 8  # batchSize from the settings


def test_status_reports_the_running_server(server: TorchServeEndpoints) -> None:
    run_dir = Path(server.token_file).parent
    status = torchserve_status(run_dir)
    assert status is not None
    assert status["endpoints"]["pid"] == server.pid
    assert status["models_ready"] == dict.fromkeys(sorted(MODELS), True)
    assert json.loads((run_dir / "torchserve.json").read_text())["endpoints"]["grpc"] == server.grpc


def test_unknown_model_is_refused_before_start(trained_store: Path, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="model 'digits-nope' is not in"):
        start_torchserve(trained_store, tmp_path / "run", models=["digits-nope"])
    assert not (tmp_path / "run" / "torchserve.pid").exists()


def test_start_timeout_stops_the_server_and_shows_logs(
    trained_store: Path, tmp_path: Path, server: TorchServeEndpoints
) -> None:
    # A second server next to the module's one: its own ports, tmp dir and token file.
    run_dir = tmp_path / "run"
    with pytest.raises(LaunchError, match="was not ready") as caught:
        start_torchserve(trained_store, run_dir, models=["digits-mlp"], timeout=0.5)
    assert "torchserve" in str(caught.value)
    assert torchserve_status(run_dir) is None
    assert not (run_dir / "torchserve.pid").exists()
