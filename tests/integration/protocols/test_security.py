"""Nothing of TorchServe's credentials or management API shows through the gateway.

A real stack (TorchServe with token authorization on, as 0.12 defaults): every answer the
gateway gives, bodies, headers and gRPC metadata, from status pages to predictions and
errors, is searched for each key in TorchServe's key_file.json and for the management
API's address; TorchServe's management paths asked of the gateway are not found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

MODEL = "digits-mlp"
ROW = np.zeros((1, 64), np.float32)
MANAGEMENT_PATHS = [
    ("GET", "/models"),
    ("GET", f"/models/{MODEL}"),
    ("GET", "/api-description"),
    ("GET", "/token?type=inference"),
    ("POST", f"/models?url={MODEL}.mar"),
    ("PUT", f"/models/{MODEL}?min_worker=3"),
    ("DELETE", f"/models/{MODEL}"),
    ("GET", "/workflows"),
]


@pytest.fixture(scope="module")
def secrets(stack: dict[str, Any]) -> list[str]:
    """Every key TorchServe wrote, and where its management API listens."""
    keys = json.loads(Path(stack["pytorch"]["token_file"]).read_text())
    found = [entry["key"] for entry in keys.values() if entry.get("key")]
    assert len(found) == 3  # inference, management, API
    management = stack["pytorch"]["management"].removeprefix("http://")
    return [*found, management]


@pytest.fixture(scope="module")
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as c:
        yield c


def _rest_answers(client: httpx.Client, admin: dict[str, str]) -> list[httpx.Response]:
    pinned = {"X-Backend": "pytorch"}
    v2 = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}
    answers = [
        client.get(path)
        for path in (
            "/healthz", "/readyz", "/metrics", "/openapi.json", f"/v1/models/{MODEL}",
            f"/v1/models/{MODEL}/metadata", "/v2", f"/v2/models/{MODEL}",
            f"/v2/models/{MODEL}/ready", "/v2/health/ready",
        )
    ]  # fmt: skip
    answers += [
        client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": ROW.tolist()}, headers=pinned
        ),
        client.post(f"/v2/models/{MODEL}/infer", json=v2, headers=pinned),
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": [[1]]}, headers=pinned),
        client.post(f"/v1/models/{MODEL}/versions/9:predict", json={"instances": [[1]]}),
        client.get("/admin/models", headers=admin),
        client.get("/admin/experiments", headers=admin),
    ]
    experiments = answers[-1].json().get("experiments") or []
    answers += [client.get(f"/admin/experiments/{e['id']}", headers=admin) for e in experiments]
    return answers


def _grpc_texts(address: str) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["input"].CopyFrom(_tensor(ROW))
        reply, call = stub.Predict.with_call(request, metadata=[("x-backend", "pytorch")])
        texts = [str(reply), str(call.trailing_metadata()), str(call.initial_metadata())]
        request.inputs["input"].CopyFrom(_tensor(np.zeros((1, 3), np.float32)))
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, metadata=[("x-backend", "pytorch")])
        texts += [str(refused.value.details()), str(refused.value.trailing_metadata())]
    return texts


def _tensor(x: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(x)


def test_no_torchserve_key_or_management_address_in_any_answer(
    stack: dict[str, Any], client: httpx.Client, secrets: list[str]
) -> None:
    answers = _rest_answers(client, stack["admin"])
    assert answers[10].status_code == 200 and answers[10].headers["X-Backend"] == "pytorch"
    texts = [f"{a.status_code} {a.headers} {a.text}" for a in answers]
    texts += _grpc_texts(stack["gateway"]["grpc"])
    leaks = [(secret[:6], text[:200]) for text in texts for secret in secrets if secret in text]
    print(f"searched {len(texts)} answers ({sum(map(len, texts))} characters): {len(leaks)} leaks")
    assert leaks == []


@pytest.mark.parametrize(("method", "path"), MANAGEMENT_PATHS)
def test_torchserve_management_paths_are_not_served(
    client: httpx.Client, stack: dict[str, Any], method: str, path: str
) -> None:
    candidates: list[dict[str, str]] = [{}, stack["admin"]]
    for headers in candidates:
        answer = client.request(method, path, headers=headers)
        assert answer.status_code in (404, 405), (method, path, answer.text)
