"""The OpenAPI document describes the whole API, and the running gateway keeps to it.

The gateway (fake upstreams) is served by uvicorn on a loopback port, and schemathesis
drives every operation of its `GET /openapi.json` with all checks (tests/api_conformance.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.routing import iter_route_contexts

from backends.process import free_port
from gateway.app import create_app
from tests.api_conformance import run_schemathesis
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway with fake upstreams behind uvicorn, stopped after the module."""
    root = tmp_path_factory.mktemp("openapi")
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    settings = settings_for(make_store(root), experiments={"data_dir": root / "data"})
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, upstreams),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_the_document_lists_every_route_with_its_body(base_url: str) -> None:
    doc = httpx.get(f"{base_url}/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/v1/models/{model}:predict",
        "/v1/models/{model}/versions/{version}:predict",
        "/v1/models/{model}/labels/{label}:predict",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
    ):
        post = paths[path]["post"]
        assert post["requestBody"]["required"] is True
        assert {"200", "400", "404", "413", "503"} <= set(post["responses"])
        assert {p["name"] for p in post["parameters"] if p["in"] == "path"} >= {"model"}
    for path, method in (
        ("/v1/feedback", "post"),
        ("/admin/experiments/{experiment}", "patch"),
        ("/admin/experiments/{experiment}/{action}", "post"),
    ):
        assert paths[path][method]["requestBody"]["required"] is True
    infer = paths["/v2/models/{model}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "422" not in str(doc) or "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_route_is_in_the_document(tmp_path: Path) -> None:
    """A route added as a plain Starlette route (`add_route`) would be missing: add it with
    `add_api_route(..., **operation(...))` instead (the fast path serves both)."""
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    documented = {
        (path, method.upper()) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    served = {
        (route.path_format, method)
        for route in iter_route_contexts(app.routes)
        if route.methods and route.path_format != app.openapi_url
        for method in route.methods - {"HEAD"}
    }
    assert served - documented == set()


def test_a_405_allows_every_method_of_the_path(base_url: str) -> None:
    reply = httpx.post(f"{base_url}/admin/models/toy/policy", headers=ADMIN)
    assert reply.status_code == 405 and reply.json() == {"error": "Method Not Allowed"}
    assert reply.headers["Allow"] == "DELETE, GET, PATCH, PUT"
    reply = httpx.get(f"{base_url}/v2/models/toy/infer")
    assert reply.status_code == 405 and reply.headers["Allow"] == "POST"
    # The concrete path wins over a templated one that also matches, as in OpenAPI.
    for path in ("/admin/experiments/reset", "/v1/models/toy:predict"):
        reply = httpx.options(f"{base_url}{path}", headers=ADMIN)
        assert reply.status_code == 405 and reply.headers["Allow"] == "POST"


def test_schemathesis_finds_nothing(base_url: str) -> None:
    checks, findings = run_schemathesis(base_url, ADMIN)
    assert not findings, "\n".join(str(f) for f in findings)
    assert checks > 1_000  # it did drive the operations
