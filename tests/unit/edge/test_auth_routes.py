"""Every route of the app refuses missing, malformed and wrong credentials unless it is
on the short public list below: a new route cannot be left open by mistake (issue 14).

The REST routes come from the app's own route table, the gRPC methods from the server's
reflection; each is called with dummy parameters, so a route is judged by what it does,
not by how it is declared."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from starlette.routing import BaseRoute, Route

from gateway._proto import oip
from gateway.app import create_app
from gateway.protocols.grpc.server import SERVICES
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for
from tests.unit.protocols.test_grpc_ingress import running

ADMIN_TOKEN, API_KEY = "the-admin-token", "the-api-key"
AUTH = {"admin_token": ADMIN_TOKEN, "api_keys": [API_KEY]}
PUBLIC = {  # answered without credentials on purpose: health, metrics, model status
    "/openapi.json", "/healthz", "/readyz", "/metrics",
    "/v1/models/{model}", "/v1/models/{model}/versions/{version}",
    "/v1/models/{model}/labels/{label}", "/v1/models/{model}/metadata",
    "/v1/models/{model}/versions/{version}/metadata", "/v1/models/{model}/labels/{label}/metadata",
    "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model}",
    "/v2/models/{model}/ready", "/v2/models/{model}/versions/{version}",
    "/v2/models/{model}/versions/{version}/ready",
}  # fmt: skip
PUBLIC_GRPC = {
    "GetModelMetadata", "GetModelStatus", "ServerLive", "ServerReady", "ServerMetadata",
    "ModelReady", "ModelMetadata",
}  # fmt: skip
DUMMY = {"model": "toy", "version": "1", "label": "latest", "experiment": "x", "action": "end"}


def _bad(good: dict[str, str], wrong: str) -> list[dict[str, str]]:
    """Missing, malformed and wrong credentials (the other kind's secret among them)."""
    return [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {good.get('Authorization', 'x')}"},
        {"Authorization": "Bearer a b c"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {wrong}"},
    ]


def walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path template, method) of every route, into included routers (FastAPI keeps them
    under `original_router` since 0.16x, as plain `routes` before)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from walk(inner.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield prefix + route.path_format, method  # `{model}`, not `{model:tfname}`


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    app = create_app(settings_for(make_store(tmp_path), auth=AUTH), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    return client.request(method, path.format(**DUMMY), headers=headers, json={"reason": "t"})


def test_every_rest_route_refuses_bad_credentials(client: TestClient) -> None:
    routes = sorted(set(walk(client.app.routes)))  # type: ignore[attr-defined]
    paths = {path for path, _ in routes}
    # The walk must see the routes that matter, or this test would pass on nothing.
    assert {"/v1/models/{model}:predict", "/v2/models/{model}/infer", "/admin/models"} <= paths
    assert PUBLIC - paths == set(), "a public route listed here no longer exists"
    checked = []
    for path, method in routes:
        if path in PUBLIC:
            continue
        admin = path.startswith("/admin")
        good = {"Authorization": f"Bearer {ADMIN_TOKEN if admin else API_KEY}"}
        for headers in _bad(good, API_KEY if admin else ADMIN_TOKEN):
            answer = _call(client, method, path, headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert "error" in answer.json()
        # With the right credential the same call gets past authentication.
        assert _call(client, method, path, good).status_code != 401, (method, path)
        checked.append(f"{method} {path}")
    assert len(checked) >= 10, checked


def _grpc_methods(channel: grpc.Channel) -> list[tuple[str, str]]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed = next(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    methods = []
    names = [s.name for s in listed.list_services_response.service]
    assert set(SERVICES) <= set(names)
    for name in names:
        if name not in SERVICES:
            continue  # grpc's own health and reflection services
        descriptor = oip.POOL.FindServiceByName(name)
        methods += [(name, method.name) for method in descriptor.methods]
    return methods


def test_every_grpc_prediction_method_refuses_bad_credentials(tmp_path: Path) -> None:
    with running(tmp_path, auth=AUTH) as gw:
        methods = _grpc_methods(gw.channel)
        assert {m for _, m in methods} >= {"Predict", "ModelInfer"}
        protected = [(s, m) for s, m in methods if m not in PUBLIC_GRPC]
        assert {m for _, m in protected} >= {"Predict", "ModelInfer"}
        served = []
        for service, method in protected:
            call = gw.channel.unary_unary(
                f"/{service}/{method}", request_serializer=None, response_deserializer=None
            )
            with pytest.raises(grpc.RpcError) as past_auth:  # an empty message: a 4xx
                call(b"", metadata=[("x-api-key", API_KEY)], timeout=5)
            if past_auth.value.code() is grpc.StatusCode.UNIMPLEMENTED:
                continue  # in the proto, not served (e.g. HandleReloadConfigRequest)
            assert past_auth.value.code() is not grpc.StatusCode.UNAUTHENTICATED
            for metadata in ([], [("authorization", "Bearer wrong")], [("x-api-key", ADMIN_TOKEN)]):
                with pytest.raises(grpc.RpcError) as refused:
                    call(b"", metadata=metadata, timeout=5)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, (method, metadata)
            served.append(method)
        assert {"Predict", "ModelInfer"} <= set(served), served
