"""No stack trace or internal detail in any answer; CORS only where configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for
from tests.unit.gateway.test_gateway_app import ADMIN, ROW, V2
from tests.unit.protocols.test_grpc_ingress import infer_request, predict_request, running

SECRET_DETAIL = "/srv/dualserve/gateway/secret_module.py line 42: boom"
LEAKS = ("Traceback", "secret_module", "/srv/", "boom", "RuntimeError")


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(SECRET_DETAIL)


def _app(tmp_path: Path, **overrides: Any) -> tuple[Any, dict[str, FakeUpstream]]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(make_store(tmp_path), **overrides)
    return create_app(settings, upstreams), upstreams  # type: ignore[arg-type]


def _no_leak(text: str) -> None:
    assert not [leak for leak in LEAKS if leak in text], text


def test_an_unexpected_exception_answers_without_detail_over_rest(tmp_path: Path) -> None:
    app, upstreams = _app(tmp_path)
    for upstream in upstreams.values():
        upstream.infer = _explode  # type: ignore[method-assign]
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.gateway.stats.snapshot = _explode  # an admin route fails too
        answers = [
            client.post("/v1/models/toy:predict", json=ROW),
            client.post("/v2/models/toy/infer", json=V2),
            client.get("/admin/experiments", headers=ADMIN),
        ]
    for answer in answers:
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error in the gateway; see its log"}
        _no_leak(answer.text + str(answer.headers))


def test_an_unexpected_exception_answers_without_detail_over_grpc(tmp_path: Path) -> None:
    with running(tmp_path) as gw:
        for upstream in gw.upstreams.values():
            upstream.infer = _explode  # type: ignore[method-assign]
        for call in (lambda: gw.predict(predict_request()), lambda: gw.infer(infer_request())):
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() is grpc.StatusCode.INTERNAL
            _no_leak(str(failed.value.details()) + str(failed.value.trailing_metadata()))


PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


def test_cors_is_off_unless_configured(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    with TestClient(app) as client:
        origin = {"Origin": "https://elsewhere.example"}
        preflight = client.options("/v1/models/toy:predict", headers={**origin, **PREFLIGHT})
        answer = client.post("/v1/models/toy:predict", json=ROW, headers=origin)
        for reply in (preflight, answer, client.get("/healthz", headers=origin)):
            assert "access-control-allow-origin" not in reply.headers
        assert answer.status_code == 200


def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, cors_origins=["https://app.example"])
    with TestClient(app) as client:
        ok, other = {"Origin": "https://app.example"}, {"Origin": "https://evil.example"}
        preflight = client.options("/v1/models/toy:predict", headers={**ok, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        refused = client.options("/v1/models/toy:predict", headers={**other, **PREFLIGHT})
        assert "access-control-allow-origin" not in refused.headers
        answer = client.post("/v1/models/toy:predict", json=ROW, headers=ok)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-backend" in answer.headers["access-control-expose-headers"].lower()
