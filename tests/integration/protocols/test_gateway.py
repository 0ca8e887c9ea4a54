"""The gateway in front of the real backends: protocols, splits, shadow, failover.

One stack (both backends + the gateway, `dualserve.stack.up`) serves the module; the
failover test stops TorchServe, so it runs last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backends.torchserve.launcher import stop_torchserve
from trainers.architecture import to_model_input
from trainers.data import load_dataset

MODEL = "digits-mlp"
KEYS = [f"user-{i}" for i in range(1000)]


@pytest.fixture(scope="module")
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack["gateway"]["rest"], timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    return to_model_input(load_dataset("digits").test.x, "mlp")


def _policy(client: httpx.Client, stack: dict[str, Any], **changes: Any) -> None:
    reply = client.patch(f"/admin/models/{MODEL}/policy", json=changes, headers=stack["admin"])
    assert reply.status_code == 200, reply.text


def _tf_rest_classes(client: httpx.Client, x: np.ndarray, backend: str) -> np.ndarray:
    reply = client.post(
        f"/v1/models/{MODEL}:predict",
        json={"instances": x.tolist()},
        headers={"X-Backend": backend},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Backend"] == backend and reply.headers["X-Model-Version"] == "1"
    return np.array([p["class"] for p in reply.json()["predictions"]])


def _v2_classes(client: httpx.Client, x: np.ndarray, backend: str) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }
    reply = client.post(f"/v2/models/{MODEL}/infer", json=body, headers={"X-Backend": backend})
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Backend"] == backend
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["class"]["datatype"] == "INT64" and outputs["probabilities"]["shape"] == [
        len(x),
        10,
    ]
    return np.array(outputs["class"]["data"])


def test_both_arms_give_the_same_top1_through_both_rest_ingresses(
    client: httpx.Client, test_x: np.ndarray
) -> None:
    tf_row, torch_row = (
        _tf_rest_classes(client, test_x, "tensorflow"),
        _tf_rest_classes(client, test_x, "pytorch"),
    )
    tf_v2, torch_v2 = (
        _v2_classes(client, test_x, "tensorflow"),
        _v2_classes(client, test_x, "pytorch"),
    )
    np.testing.assert_array_equal(tf_row, tf_v2)
    np.testing.assert_array_equal(torch_row, torch_v2)
    assert np.mean(tf_row == torch_row) >= 0.97


def _arms_for_keys(client: httpx.Client, x: np.ndarray) -> dict[str, str]:
    def one(i: int) -> tuple[str, str]:
        body = {"instances": x[i % len(x) : i % len(x) + 1].tolist()}
        reply = client.post(
            f"/v1/models/{MODEL}:predict", json=body, headers={"X-Routing-Key": KEYS[i]}
        )
        assert reply.status_code == 200, reply.text
        return KEYS[i], reply.headers["X-Backend"]

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, range(len(KEYS))))


def test_sticky_split_over_1000_keys(
    client: httpx.Client, stack: dict[str, Any], test_x: np.ndarray
) -> None:
    _policy(client, stack, mode="weighted", weights={"tensorflow": 50, "pytorch": 50}, sticky=True)
    first = _arms_for_keys(client, test_x)
    share = sum(arm == "tensorflow" for arm in first.values()) / len(KEYS)
    assert 0.45 <= share <= 0.55
    assert _arms_for_keys(client, test_x) == first  # every key stays on its arm


def test_changing_90_10_to_80_20_moves_only_about_10_percent(
    client: httpx.Client, stack: dict[str, Any], test_x: np.ndarray
) -> None:
    _policy(client, stack, mode="weighted", weights={"tensorflow": 90, "pytorch": 10})
    before = _arms_for_keys(client, test_x)
    _policy(client, stack, weights={"tensorflow": 80, "pytorch": 20})
    after = _arms_for_keys(client, test_x)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == "tensorflow" and after[k] == "pytorch" for k in moved)
    assert 0.07 <= len(moved) / len(KEYS) <= 0.13


def test_shadow_records_agreement_without_changing_the_answer(
    client: httpx.Client, stack: dict[str, Any], test_x: np.ndarray
) -> None:
    client.post("/admin/experiments/reset", headers=stack["admin"])
    _policy(client, stack, mode="shadow", primary="tensorflow", shadow_sample_rate=1.0)
    pinned = _tf_rest_classes(client, test_x[:200], "tensorflow")
    answers = []
    for i in range(200):
        reply = client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": test_x[i : i + 1].tolist()}
        )
        assert reply.headers["X-Backend"] == "tensorflow"
        answers.append(reply.json()["predictions"][0]["class"])
    np.testing.assert_array_equal(answers, pinned)
    shadow: dict[str, Any] = {}
    for _ in range(100):
        shadow = (
            client.get("/admin/experiments", headers=stack["admin"])
            .json()["models"][MODEL]
            .get("shadow", {})
        )
        if shadow.get("compared", 0) + shadow.get("dropped", 0) >= 200:
            break
        time.sleep(0.1)
    assert shadow["compared"] >= 190 and shadow["errors"] == 0
    assert shadow["top1_agreement"] >= 0.97


def test_plain_requests_client_and_metrics(stack: dict[str, Any], test_x: np.ndarray) -> None:
    base = stack["gateway"]["rest"]
    # TF Serving's documented REST usage, with a plain `requests` client.
    reply = requests.post(
        f"{base}/v1/models/{MODEL}:predict", json={"instances": test_x[:3].tolist()}, timeout=10
    )
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 3
    assert (
        requests.get(f"{base}/v1/models/{MODEL}", timeout=10).json()["model_version_status"][0][
            "state"
        ]
        == "AVAILABLE"
    )
    assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
    families = {
        f.name
        for f in text_string_to_metric_families(requests.get(f"{base}/metrics", timeout=10).text)
    }
    assert {"dualserve_requests", "dualserve_request_latency_seconds", "dualserve_upstream_latency_seconds",
            "dualserve_gateway_overhead_seconds", "dualserve_shadow_comparisons"} <= families  # fmt: skip


def test_bad_input_is_refused_before_the_backends(client: httpx.Client) -> None:
    reply = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [[1.0] * 63]})
    assert (
        reply.status_code == 400 and "expected shape [-1, 64], got [1, 63]" in reply.json()["error"]
    )
    assert client.post("/v1/models/nope:predict", json={"instances": [[1.0]]}).status_code == 404


def test_failover_when_torchserve_stops(
    client: httpx.Client, stack: dict[str, Any], test_x: np.ndarray
) -> None:
    _policy(client, stack, mode="pinned", primary="pytorch", failover=True)
    assert (
        client.post(f"/v1/models/{MODEL}:predict", json={"instances": test_x[:1].tolist()}).headers[
            "X-Backend"
        ]
        == "pytorch"
    )
    stop_torchserve(stack["paths"].torchserve_dir)
    for i in range(20):
        reply = client.post(
            f"/v1/models/{MODEL}:predict", json={"instances": test_x[i : i + 1].tolist()}
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["X-Backend"] == "tensorflow" and reply.headers["X-Failover"] == "true"
    pinned = client.post(
        f"/v1/models/{MODEL}:predict",
        json={"instances": test_x[:1].tolist()},
        headers={"X-Backend": "pytorch"},
    )
    assert pinned.status_code in (502, 503) and pinned.json()["error"].startswith("pytorch")
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["models"][MODEL] == {
        "tensorflow": True,
        "pytorch": False,
    }
