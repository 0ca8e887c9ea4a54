"""The prediction routes' direct path: same answers and errors, without FastAPI's stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from starlette.requests import Request

from gateway.app import create_app
from gateway.core.errors import NotFound
from gateway.processes.workers import _uvicorn_options
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ROW = {"instances": [[0.0, 5.0, 1.0, 2.0]]}
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, FakeUpstream]]]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}  # type: ignore[arg-type]
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client, upstreams


@pytest.fixture
def through_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths that went through FastAPI's own `__call__` (the slow path)."""
    seen: list[str] = []
    original = FastAPI.__call__

    async def counting(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(FastAPI, "__call__", counting)
    return seen


def test_predict_and_infer_skip_fastapi(
    setup: tuple[TestClient, Any], through_fastapi: list[str]
) -> None:
    client, _ = setup
    assert client.post("/v1/models/toy:predict", json=ROW).status_code == 200
    assert client.post("/v1/models/toy/versions/2:predict", json=ROW).status_code == 200
    assert client.post("/v2/models/toy/infer", json=V2).status_code == 200
    assert client.get("/v1/models/toy").status_code == 200
    assert through_fastapi == ["/v1/models/toy"]


def test_errors_on_the_direct_path_keep_their_form(setup: tuple[TestClient, Any]) -> None:
    client, _ = setup
    reply = client.post("/v1/models/nope:predict", json=ROW, headers={"X-Request-Id": "r1"})
    assert reply.status_code == 404 and reply.json() == {"error": "unknown model 'nope'"}
    assert reply.headers["X-Request-Id"] == "r1"
    counted = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("dualserve_requests_total") and 'model="unknown"' in line
    ]
    assert len(counted) == 1 and '"404"' in counted[0] and counted[0].endswith(" 1.0")


def test_a_bug_is_a_plain_500_without_a_trace(setup: tuple[TestClient, Any]) -> None:
    client, upstreams = setup
    for upstream in upstreams.values():
        upstream.fail_with = RuntimeError("a bug in an upstream client")
    for path, body in (("/v1/models/toy:predict", ROW), ("/v2/models/toy/infer", V2)):
        reply = client.post(path, json=body)
        assert reply.status_code == 500
        assert reply.json() == {"error": "internal error in the gateway; see its log"}


def test_other_methods_still_get_fastapis_answers(setup: tuple[TestClient, Any]) -> None:
    client, _ = setup
    reply = client.put("/v1/models/toy:predict", json=ROW)
    assert reply.status_code == 405 and "error" in reply.json()
    assert reply.headers["Allow"] == "POST"  # RFC 9110 §15.5.6
    # model names are TF Serving's [^/:]+: an unknown verb is no route, not model "toy:nonsense"
    unknown_verb = client.post("/v1/models/toy:nonsense", json=ROW)
    assert unknown_verb.status_code == 404 and "error" in unknown_verb.json()


def test_middleware_added_later_is_never_skipped(tmp_path: Path) -> None:
    """Middleware added to the app turns the direct path off: predictions pass through it."""
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}  # type: ignore[arg-type]
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    seen: list[str] = []

    class Counting:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app.add_middleware(Counting)
    with TestClient(app) as client:
        assert client.post("/v1/models/toy:predict", json=ROW).status_code == 200
        assert client.post("/v2/models/toy/infer", json=V2).status_code == 200
    assert seen == ["/v1/models/toy:predict", "/v2/models/toy/infer"]


def test_exception_handler_added_later_applies_on_the_direct_path(
    tmp_path: Path, through_fastapi: list[str]
) -> None:
    """One registry of exception handlers, looked up by the exception's type (nearest class
    of its MRO first, as Starlette's): a handler registered after `create_app` answers a
    `:predict` on the direct path as it answers an admin route on FastAPI's."""
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}  # type: ignore[arg-type]
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]

    async def teapot(request: Request, exc: Exception) -> Response:
        return JSONResponse({"handled": type(exc).__name__}, status_code=418)

    app.add_exception_handler(NotFound, teapot)  # GatewayError's handler stays registered
    admin = {"Authorization": "Bearer admin-secret"}
    with TestClient(app) as client:
        predict = client.post("/v1/models/nope:predict", json=ROW)
        policy = client.get("/admin/models/nope/policy", headers=admin)
        other = client.post("/v1/models/toy/versions/x:predict", json=ROW)  # a BadRequest
    assert (predict.status_code, predict.json()) == (418, {"handled": "NotFound"})
    assert (policy.status_code, policy.json()) == (418, {"handled": "NotFound"})
    assert other.status_code == 400  # GatewayError's own handler, as before
    assert through_fastapi == ["/admin/models/nope/policy"]  # :predict took the direct path


def test_headers_are_read_case_insensitively_first_wins(setup: tuple[TestClient, Any]) -> None:
    client, upstreams = setup
    headers = [("X-Request-Id", "first"), ("x-request-id", "second"), ("X-BACKEND", "pytorch")]
    reply = client.post("/v1/models/toy:predict", json=ROW, headers=headers)
    assert reply.status_code == 200
    assert reply.headers["X-Request-Id"] == "first" and reply.headers["X-Backend"] == "pytorch"
    assert [call.request_id for call in upstreams["pytorch"].calls] == ["first"]


def test_uvicorn_calls_the_app_itself(tmp_path: Path) -> None:
    """No ASGI layer between the server and the prediction routes (uvicorn's proxy headers
    middleware wrapped every request before; nothing reads the addresses it rewrites)."""
    app = create_app(settings_for(make_store(tmp_path)), {})  # type: ignore[arg-type]
    config = uvicorn.Config(app, **_uvicorn_options("warning"))
    config.load()
    assert config.loaded_app is app
