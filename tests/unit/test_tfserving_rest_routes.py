"""The REST app in process over a fake model: routes, error middleware, metrics page."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from backends.tfserving.server.core import ServingCore
from backends.tfserving.server.manager import ModelManager
from backends.tfserving.server.metrics import ServerMetrics
from backends.tfserving.model_config import ModelConfig
from backends.tfserving.server.rest import create_rest_app
from backends.tfserving.server.signature import SignatureInfo, TensorInfo

F32 = np.dtype(np.float32)
SIG = SignatureInfo(
    "serving_default",
    {"input": TensorInfo("input", F32, "DT_FLOAT", (-1, 2))},
    {
        "sum": TensorInfo("sum", F32, "DT_FLOAT", (-1,)),
        "class": TensorInfo("class", np.dtype(np.int64), "DT_INT64", (-1,)),
    },
)


class Adder:
    name, version, signatures = "adder", 1, {"serving_default": SIG}

    def run(self, signature: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> Any:
        total = inputs["input"].sum(axis=1)
        return {
            k: v for k, v in {"sum": total, "class": total.astype(np.int64)}.items() if k in outputs
        }

    def signature_def_map(self) -> Any:
        return None

    def metadata_json(self) -> dict[str, Any]:
        return {"signature_def": {}}


def call(tmp_path: Path, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    (tmp_path / "1").mkdir(exist_ok=True)
    manager = ModelManager([ModelConfig("adder", tmp_path)], lambda n, v, p: Adder())
    manager.poll_once()
    core = ServingCore(manager, ServerMetrics())

    async def run() -> tuple[int, Any]:
        app = create_rest_app(core, "/monitoring/prometheus/metrics")
        async with TestClient(TestServer(app)) as client:
            reply = await client.request(method, path, **kwargs)
            is_json = reply.content_type == "application/json"
            return reply.status, await (reply.json() if is_json else reply.text())

    try:
        return asyncio.run(run())
    finally:
        core.close()


def test_row_predict_over_http(tmp_path: Path) -> None:
    status, body = call(tmp_path, "POST", "/v1/models/adder:predict", json={"instances": [[1, 2]]})
    assert (status, body) == (200, {"predictions": [{"sum": 3.0, "class": 3}]})


def test_columnar_predict_on_a_version_path(tmp_path: Path) -> None:
    body = {"inputs": [[1, 2], [3, 4]]}
    status, reply = call(tmp_path, "POST", "/v1/models/adder/versions/1:predict", json=body)
    assert (status, reply["outputs"]["sum"]) == (200, [3.0, 7.0])


def test_status_route_and_malformed_paths(tmp_path: Path) -> None:
    status, body = call(tmp_path, "GET", "/v1/models/adder/versions/1")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = call(tmp_path, "DELETE", "/v1/models/adder")
    assert (status, body) == (404, {"error": "Malformed request: DELETE /v1/models/adder"})


@pytest.mark.parametrize(
    ("api", "kind"), [("classify", "classification"), ("regress", "regression")]
)
def test_classify_and_regress_on_a_predict_signature_answer_tf_servings_error(
    tmp_path: Path, api: str, kind: str
) -> None:
    """tensorflow_serving/servables/tensorflow/classifier.cc, regressor.cc."""
    examples = {"examples": [{"x": [1.0]}]}
    status, body = call(tmp_path, "POST", f"/v1/models/adder/versions/1:{api}", json=examples)
    assert status == 400
    assert body["error"] == (
        f"Expected {kind} signature method_name to be tensorflow/serving/{api}. "
        "Was: tensorflow/serving/predict"
    )
    status, body = call(tmp_path, "POST", f"/v1/models/adder:{api}", data=b"{oops")
    assert status == 400 and body["error"].startswith("JSON Parse error")
    status, body = call(tmp_path, "POST", f"/v1/models/adder:{api}", json={})  # json_tensor.cc
    assert (status, body["error"]) == (
        400,
        "JSON Value: {} When method is classify, key 'examples' is expected and was not found",
    )


def test_metadata_route(tmp_path: Path) -> None:
    status, body = call(tmp_path, "GET", "/v1/models/adder/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "adder", "signature_name": "", "version": "1"}


def test_errors_are_json_with_the_status(tmp_path: Path) -> None:
    status, body = call(tmp_path, "POST", "/v1/models/adder:predict", data=b"{oops")
    assert status == 400 and body["error"].startswith("JSON Parse error")


def test_metrics_page_is_served_as_prometheus_text(tmp_path: Path) -> None:
    status, text = call(tmp_path, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
