"""The gateway app in process with fake upstreams: protocols, routing, errors, admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.core.errors import UpstreamTimeout, UpstreamUnavailable
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ROW = {"instances": [[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 1.0]]}
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 9, 0]}]}
ADMIN = {"Authorization": "Bearer admin-secret"}


class Gateway:
    def __init__(self, client: TestClient, upstreams: dict[str, FakeUpstream]) -> None:
        self.client = client
        self.upstreams = upstreams

    @property
    def calls(self) -> int:
        return sum(len(u.calls) for u in self.upstreams.values())


def _gateway(tmp_path: Path, **overrides: Any) -> Iterator[Gateway]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    app = create_app(settings_for(make_store(tmp_path), **overrides), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield Gateway(client, upstreams)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    yield from _gateway(tmp_path)


@pytest.mark.parametrize("arm", ["tensorflow", "pytorch"])
def test_row_and_columnar_predict_answer_from_the_pinned_arm(gw: Gateway, arm: str) -> None:
    reply = gw.client.post(
        "/v1/models/toy:predict", json=ROW, headers={"X-Backend": arm, "X-Request-Id": "abc"}
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["X-Backend"] == arm and reply.headers["X-Request-Id"] == "abc"
    assert reply.headers["X-Model-Version"] == "2"
    assert [p["class"] for p in reply.json()["predictions"]] == [1, 0]
    columnar = gw.client.post(
        "/v1/models/toy/versions/1:predict", json={"inputs": {"input": ROW["instances"]}}
    )
    assert (
        columnar.json()["outputs"]["class"] == [1, 0] and columnar.headers["X-Model-Version"] == "1"
    )


def test_v2_infer_and_metadata(gw: Gateway) -> None:
    reply = gw.client.post(
        "/v2/models/toy/infer", json={**V2, "id": "r1", "outputs": [{"name": "class"}]}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "r1" and body["model_version"] == "2"
    assert body["outputs"] == [{"name": "class", "datatype": "INT64", "shape": [1], "data": [2]}]
    meta = gw.client.get("/v2/models/toy").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert gw.client.get("/v2/models/toy/ready").json()["ready"] is True
    assert gw.client.get("/v2/health/live").status_code == 200


def test_tf_serving_status_and_metadata(gw: Gateway) -> None:
    status = gw.client.get("/v1/models/toy").json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    meta = gw.client.get("/v1/models/toy/metadata").json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"


BAD_INPUTS = [
    ("/v1/models/toy:predict", b"{nope", 400, "^JSON Parse error: "),
    ("/v1/models/toy:predict", b'{"instances": [[1, 2, 3]]}', 400, r"input 'input': expected shape \[-1, 4\], got \[1, 3\]"),
    ("/v1/models/toy:predict", b'{"instances": [{"pixels": [1, 2, 3, 4]}]}', 400, "unknown input 'pixels'"),
    ("/v1/models/toy:predict", b'{"instances": [["a", "b", "c", "d"]]}', 400, r"input 'input': expected DT_FLOAT \(float32\) values but received strings"),
    ("/v1/models/toy:predict", b'{"instances": [[1, 2, 3, 4], [1]]}', 400, "input 'input'"),
    ("/v1/models/toy:predict", b'{"rows": []}', 400, "^Missing 'inputs' or 'instances' key$"),
    ("/v1/models/toy:predict", b'{"signature_name": "classify", "instances": [[1, 2, 3, 4]]}', 400, 'Serving signature key "classify" not found'),
    ("/v1/models/nope:predict", b'{"instances": [[1, 2, 3, 4]]}', 404, "unknown model 'nope'"),
    ("/v1/models/toy/versions/9:predict", b'{"instances": [[1, 2, 3, 4]]}', 404, "model toy has no version 9"),
    ("/v1/models/toy/labels/canary:predict", b'{"instances": [[1, 2, 3, 4]]}', 400, "^Unrecognized servable version label: canary$"),
    ("/v2/models/toy/infer", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}', 400, "expected dtype float32, got int64"),
    ("/v2/models/toy/infer", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]}', 400, r"shape \[1, 4\] needs 4 values, got 2"),
    ("/v2/models/toy/infer", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}]}', 400, r"inputs\[0\] is missing 'data'"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_INPUTS)
def test_bad_input_never_reaches_an_upstream(
    gw: Gateway, path: str, body: bytes, status: int, message: str
) -> None:
    reply = gw.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    assert re.search(message, reply.json()["error"]), reply.json()
    assert gw.calls == 0


def test_body_too_large_is_413(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, max_body_bytes=64):
        reply = gw.client.post(
            "/v1/models/toy:predict", json={"instances": [[1.0, 2.0, 3.0, 4.0]] * 20}
        )
        assert reply.status_code == 413 and "exceeds the limit of 64" in reply.json()["error"]
        assert gw.calls == 0


def test_bad_pin_header_is_named(gw: Gateway) -> None:
    reply = gw.client.post("/v1/models/toy:predict", json=ROW, headers={"X-Backend": "jax"})
    assert reply.status_code == 400 and "X-Backend" in reply.json()["error"]


def test_failover_answers_from_the_other_framework(tmp_path: Path) -> None:
    policy = {"toy": {"mode": "pinned", "primary": "pytorch", "failover": True}}
    for gw in _gateway(tmp_path, models=policy):
        gw.upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "connection refused")
        reply = gw.client.post("/v1/models/toy:predict", json=ROW)
        assert reply.status_code == 200 and reply.headers["X-Backend"] == "tensorflow"
        assert reply.headers["X-Failover"] == "true"


def test_no_failover_gives_a_status_naming_the_backend(tmp_path: Path) -> None:
    policy = {"toy": {"mode": "pinned", "primary": "pytorch", "failover": False}}
    for gw in _gateway(tmp_path, models=policy):
        gw.upstreams["pytorch"].fail_with = UpstreamTimeout("pytorch", "no answer within 5 s")
        reply = gw.client.post("/v1/models/toy:predict", json=ROW)
        assert reply.status_code == 504 and reply.json()["error"].startswith("pytorch:")


def test_breaker_opens_and_stops_calling_a_failing_backend(tmp_path: Path) -> None:
    policy = {"toy": {"mode": "pinned", "primary": "pytorch", "failover": True}}
    for gw in _gateway(
        tmp_path, models=policy, breaker={"failure_threshold": 3, "reset_after_s": 60}
    ):
        gw.upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "down")
        for _ in range(10):
            assert (
                gw.client.post("/v1/models/toy:predict", json=ROW).headers["X-Backend"]
                == "tensorflow"
            )
        assert len(gw.upstreams["pytorch"].calls) == 3
        assert (
            gw.client.get("/admin/experiments", headers=ADMIN).json()["breakers"]["pytorch"]
            == "open"
        )


def test_shadow_compares_without_changing_the_answer(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, models={"toy": {"mode": "shadow", "primary": "tensorflow"}}):
        for _ in range(5):
            reply = gw.client.post("/v1/models/toy:predict", json=ROW)
            assert reply.headers["X-Backend"] == "tensorflow"
        stats = _wait_for_shadow(gw, 5)
        assert stats["compared"] == 5 and stats["top1_agreement"] == 1.0


def _wait_for_shadow(gw: Gateway, count: int) -> dict[str, Any]:
    import time

    for _ in range(100):
        shadow = (
            gw.client.get("/admin/experiments", headers=ADMIN)
            .json()["models"]["toy"]
            .get("shadow", {})
        )
        if shadow.get("compared", 0) >= count:
            return dict(shadow)
        time.sleep(0.02)
    raise AssertionError("shadow comparisons did not arrive")


def test_admin_needs_the_token_and_changes_policy_at_run_time(gw: Gateway) -> None:
    assert gw.client.get("/admin/experiments").status_code == 401
    assert (
        gw.client.get("/admin/experiments", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    changed = gw.client.patch(
        "/admin/models/toy/policy", json={"mode": "pinned", "primary": "pytorch"}, headers=ADMIN
    )
    assert changed.status_code == 200 and changed.json()["effective"]["primary"] == "pytorch"
    assert gw.client.post("/v1/models/toy:predict", json=ROW).headers["X-Backend"] == "pytorch"
    bad = gw.client.patch(
        "/admin/models/toy/policy", json={"weights": {"tensorflow": -1}}, headers=ADMIN
    )
    assert bad.status_code == 400 and "weights" in bad.json()["error"]
    assert gw.client.patch("/admin/models/nope/policy", json={}, headers=ADMIN).status_code == 404


def test_api_keys_protect_predictions(tmp_path: Path) -> None:
    for gw in _gateway(tmp_path, auth={"admin_token": "a", "api_keys": ["k1", "k2"]}):
        assert gw.client.post("/v1/models/toy:predict", json=ROW).status_code == 401
        assert (
            gw.client.post(
                "/v1/models/toy:predict", json=ROW, headers={"X-API-Key": "k2"}
            ).status_code
            == 200
        )
        ok = gw.client.post(
            "/v1/models/toy:predict", json=ROW, headers={"Authorization": "Bearer k1"}
        )
        assert ok.status_code == 200
        assert gw.calls == 2


def test_metrics_parse_and_count(gw: Gateway) -> None:
    gw.client.post("/v1/models/toy:predict", json=ROW, headers={"X-Backend": "pytorch"})
    gw.client.post("/v1/models/nope:predict", json=ROW)
    families = {f.name: f for f in text_string_to_metric_families(gw.client.get("/metrics").text)}
    assert {
        "dualserve_requests",
        "dualserve_request_latency_seconds",
        "dualserve_gateway_overhead_seconds",
    } <= set(families)
    samples = {(s.labels["model"], s.labels["arm"], s.labels["status"]): s.value
               for s in families["dualserve_requests"].samples if s.name.endswith("_total")}  # fmt: skip
    assert samples[("toy", "pytorch", "200")] == 1 and samples[("unknown", "none", "404")] == 1


def test_health_and_readiness(gw: Gateway) -> None:
    assert gw.client.get("/healthz").status_code == 200
    assert gw.client.get("/readyz").json()["ready"] is True
    gw.upstreams["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
    gw.upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "down")
    assert gw.client.get("/readyz").status_code == 503


def test_unknown_route_is_a_json_404(gw: Gateway) -> None:
    reply = gw.client.get("/v3/nothing")
    assert reply.status_code == 404 and "no route" in reply.json()["error"]
