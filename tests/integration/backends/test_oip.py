"""The bundled OIP server (`backends/oip/`) on a real trained store: the official
tritonclient (v2 REST with binary data, gRPC) and the gateway's OIP upstream against it,
its answers against the TorchScript export's, version discovery as the store grows."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from backends.oip.launcher import OipEndpoints, oip_status, start_oip, stop_oip
from gateway.control.catalog_follower import OipVersions
from gateway.core.errors import NotFound, UpstreamRejected
from gateway.core.types import InferRequest
from gateway.settings import OipSettings
from gateway.upstreams.factory import oip_upstream
from tests.triton_clients import TritonClientError, call
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from trainers.manifest import load_manifest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
MODELS = {"digits-mlp": "mlp", "digits-cnn": "cnn"}


@pytest.fixture(scope="module")
def store(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy: the last test trains a new version into it."""
    copy = tmp_path_factory.mktemp("oip") / "store"
    shutil.copytree(trained_store, copy)
    return copy


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipEndpoints]:
    run_dir = tmp_path_factory.mktemp("oip-run")
    try:
        yield start_oip(store, run_dir)
    finally:
        stop_oip(run_dir)
    assert oip_status(run_dir) is None


def _x(arch: str, n: int = 40) -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x[:n], arch)


def _torchscript(store: Path, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The truth: the TorchScript export TorchServe serves, run here."""
    entry = load_manifest(store).models[model].versions["1"].frameworks["pytorch"]
    module = torch.jit.load(str(store / entry.artifact))
    return {k: v.numpy() for k, v in module(torch.from_numpy(x)).items()}


def _same(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(got["class"], want["class"])
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_http_binary_answers_equal_torchscript(
    server: OipEndpoints, store: Path, model: str
) -> None:
    x = _x(MODELS[model])
    url = server.rest.removeprefix("http://")
    health = call("http_health", url=url, model=model)
    assert health["server_ready"] and health["model_ready"]
    assert "binary_tensor_data" in health["server_metadata"]["extensions"]
    answer = call(
        "http_infer", url=url, model=model, want=["probabilities", "class"],
        inputs=[{"name": "input", "datatype": "FP32", "array": x}], request_id="r-1",
    )  # fmt: skip
    assert answer["response"]["model_version"] == "1" and answer["response"]["id"] == "r-1"
    _same(answer["outputs"], _torchscript(store, model, x))


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_grpc_answers_equal_torchscript(
    server: OipEndpoints, store: Path, model: str
) -> None:
    x = _x(MODELS[model], 7)
    health = call("grpc_health", url=server.grpc, model=model)
    assert health["server_live"] and health["server_ready"] and health["model_ready"]
    assert health["input_datatypes"] == ["FP32"] and health["versions"] == ["1"]
    answer = call(
        "grpc_infer", url=server.grpc, model=model, want=["probabilities", "class"],
        inputs=[{"name": "input", "datatype": "FP32", "array": x}], request_id="g-1",
    )  # fmt: skip
    assert answer["id"] == "g-1"
    _same(answer["outputs"], _torchscript(store, model, x))


def test_bad_requests_are_named_and_nothing_runs(server: OipEndpoints) -> None:
    url = server.rest.removeprefix("http://")
    wrong = np.zeros((2, 63), np.float32)
    with pytest.raises(TritonClientError, match=r"shape \[2, 63\], the model expects \[-1, 64\]"):
        call("http_infer", url=url, model="digits-mlp", want=["class"],
             inputs=[{"name": "input", "datatype": "FP32", "array": wrong}])  # fmt: skip
    with pytest.raises(TritonClientError, match="datatype FP64, the model expects FP32"):
        call("grpc_infer", url=server.grpc, model="digits-mlp", want=["class"],
             inputs=[{"name": "input", "datatype": "FP64", "array": wrong.astype(np.float64)}])  # fmt: skip
    with httpx.Client(base_url=server.rest, timeout=30) as client:
        assert client.get("/v2/models/nope").status_code == 404
        missing = client.get("/v2/models/digits-mlp/versions/9")
        assert missing.status_code == 404 and "has no version 9" in missing.json()["error"]
        assert client.get("/v2/models/digits-mlp/versions/x/ready").status_code == 400
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [0, 64], "data": []}]}
        empty = client.post("/v2/models/digits-mlp/infer", json=body)
        assert empty.status_code == 400 and "max_batch_size" in empty.json()["error"]
        page = client.get("/metrics").text
    assert 'nv_inference_request_failure_total{model="digits-mlp"' in page


def test_repository_index_and_metrics(server: OipEndpoints) -> None:
    with httpx.Client(base_url=server.rest, timeout=30) as client:
        index = client.post("/v2/repository/index").json()
        page = client.get("/metrics").text
    assert {(e["name"], e["version"], e["state"]) for e in index} >= {
        ("digits-mlp", "1", "READY"),
        ("digits-cnn", "1", "READY"),
    }
    assert 'nv_inference_request_success_total{model="digits-cnn",version="1"}' in page
    assert 'nv_inference_count_total{model="digits-cnn",version="1"} 47.0' in page  # 40 + 7


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_gateway_oip_upstream_reads_the_server(
    server: OipEndpoints, store: Path, transport: str
) -> None:
    settings = OipSettings(transport=transport, rest=[server.rest], grpc=[server.grpc])  # type: ignore[arg-type]
    x = _x("cnn", 5)

    async def run() -> tuple[Any, bool, Exception, Exception]:
        upstream = oip_upstream(settings, "pytorch")
        try:
            answer = await upstream.infer(
                InferRequest("digits-cnn", {"input": x}, request_id="u"), 30
            )
            ready = await upstream.ready("digits-cnn")
            unknown = await _error(
                upstream.infer(InferRequest("nope", {"input": x}, request_id="n"), 30)
            )
            bad = await _error(
                upstream.infer(InferRequest("digits-cnn", {"input": x[:, :2]}, request_id="b"), 30)
            )
        finally:
            await upstream.aclose()
        return answer, ready, unknown, bad

    answer, ready, unknown, bad = asyncio.run(run())
    assert ready and answer.version == 1 and answer.backend == "pytorch"
    assert answer.outputs["class"].dtype == np.int64
    _same(answer.outputs, _torchscript(store, "digits-cnn", x))
    assert isinstance(unknown, NotFound)
    assert isinstance(bad, UpstreamRejected) and "the model expects [-1, 8, 8, 1]" in str(bad)


async def _error(call: Any) -> Exception:
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("the call succeeded")


def test_a_new_version_is_discovered_and_served(server: OipEndpoints, store: Path) -> None:
    """Version discovery: train v2 (PyTorch only) into the served store; the server loads
    it from the manifest and its model metadata, which the catalog follower reads, lists it."""
    command = [sys.executable, "-m", "trainers", "--framework", "torch", "--epochs", "1",
               "--model-store", str(store)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr

    async def versions() -> frozenset[int] | None:
        source = OipVersions([server.rest], "pytorch")
        try:
            return await source.versions("digits-mlp")
        finally:
            await source.aclose()

    deadline = time.monotonic() + 60
    while (seen := asyncio.run(versions())) != {1, 2} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == {1, 2}
    x = _x("mlp", 3)
    with httpx.Client(base_url=server.rest, timeout=30) as client:
        body = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [3, 64], "data": x.ravel().tolist()}
            ]
        }
        answer = client.post("/v2/models/digits-mlp/infer", json=body).json()
    assert answer["model_version"] == "2"  # no version asked: the newest
