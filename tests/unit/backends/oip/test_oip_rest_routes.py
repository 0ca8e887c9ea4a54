"""The OIP server's REST routes in process (aiohttp's test server), on a fake model:
statuses and sentences as the protocol gives them, the body bound, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aiohttp.test_utils import TestClient, TestServer

from backends.oip.core import OipCore
from backends.oip.repository import ModelRepository, ServedVersion
from backends.oip.rest import create_app
from tests.unit.backends.oip.test_oip_core import SERVED


def _double(x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"probabilities": x[:, :2] * 2, "class": torch.argmax(x, dim=1)}


def _core(tmp_path: Path, loaded: bool = True) -> OipCore:
    repository = ModelRepository(tmp_path)
    if loaded:
        served = ServedVersion("m", 3, SERVED.inputs, SERVED.outputs, _double, Path("m.pt2"))
        repository._served["m"] = {3: served}
    return OipCore(repository)


def _run(core: OipCore, body: Callable[[TestClient], Awaitable[Any]], limit: int = 4096) -> Any:
    async def go() -> Any:
        async with TestClient(TestServer(create_app(core, limit))) as client:
            return await body(client)

    try:
        return asyncio.run(go())
    finally:
        core.close()


def test_infer_json_answers_in_the_models_order_with_its_version(tmp_path: Path) -> None:
    x = np.array([[1, 5, 2, 0], [3, 1, 0, 0]], np.float32)
    request = {"id": "q", "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4],
                                      "data": x.ravel().tolist()}]}  # fmt: skip

    async def body(client: TestClient) -> Any:
        reply = await client.post("/v2/models/m/infer", json=request)
        return reply.status, await reply.json()

    status, answer = _run(_core(tmp_path), body)
    assert status == 200 and answer["model_version"] == "3" and answer["id"] == "q"
    assert [o["name"] for o in answer["outputs"]] == ["probabilities", "class"]
    assert answer["outputs"][1] == {
        "name": "class",
        "datatype": "INT64",
        "shape": [2],
        "data": [1, 0],
    }
    assert answer["outputs"][0]["data"] == [2.0, 10.0, 6.0, 2.0]


def test_a_body_past_the_bound_is_refused_with_413(tmp_path: Path) -> None:
    async def body(client: TestClient) -> Any:
        reply = await client.post("/v2/models/m/infer", data=b"{" + b" " * 200 + b"}")
        return reply.status, await reply.text()

    status, text = _run(_core(tmp_path), body, limit=100)
    assert status == 413 and "100" in text  # aiohttp names the limit


def test_readiness_and_errors_say_why(tmp_path: Path) -> None:
    async def body(client: TestClient) -> Any:
        replies = [
            await client.get("/v2/health/ready"),
            await client.get("/v2/models/m/ready"),
            await client.get("/v2/models/m/versions/0"),
            await client.post("/v2/models/m/infer", data=b"[1]"),
        ]
        return [(r.status, await r.json()) for r in replies]

    ready, model, version, bad = _run(_core(tmp_path, loaded=False), body)
    assert ready == (503, {"ready": False}) and model == (503, {"name": "m", "ready": False})
    assert version == (400, {"error": "version '0' must be a positive integer"})
    assert bad == (400, {"error": "the request must be a JSON object with an 'inputs' list"})


def test_a_model_that_fails_answers_500_with_a_sentence_and_no_internals(tmp_path: Path) -> None:
    def broken(x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RuntimeError("kernel failed in /opt/secret/path.cpp")

    repository = ModelRepository(tmp_path)
    repository._served["m"] = {
        1: ServedVersion("m", 1, SERVED.inputs, SERVED.outputs, broken, Path("m.pt2"))
    }
    request = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]
    }

    async def body(client: TestClient) -> Any:
        reply = await client.post("/v2/models/m/infer", json=request)
        return reply.status, await reply.text()

    status, text = _run(OipCore(repository), body)
    assert status == 500 and "failed to run (RuntimeError" in text
    assert "/opt/secret" not in text and "Traceback" not in text
