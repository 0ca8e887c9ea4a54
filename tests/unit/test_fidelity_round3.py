"""Fidelity round 3, in process with fake upstreams: what tritonclient and TF Serving
clients meet beyond predict (issue 25).

References: RFC 9110 §9.3.2 (HEAD), TF Serving's texts as the bundled server mirrors them
(`backends/tfserving/server/errors.py`, `rest.py`, `signature.py`), Triton's
`InferenceServer::ModelIsReady` (unknown model or version: ready false) and
tritonclient's own request writer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from tritonclient.http._utils import _get_inference_request

from gateway.app import create_app
from tests.unit.gateway_fakes import FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    app = create_app(settings_for(make_store(tmp_path)), upstreams)  # type: ignore[arg-type]
    with TestClient(app) as c:
        yield c


def _concrete(path: str) -> str:
    for name, value in (("{model:tfname}", "toy"), ("{model}", "toy"), ("{version}", "1")):
        path = path.replace(name, value)
    return re.sub(r"{[^}]*}", "x", path)  # other resources: unknown, 404 both ways


def test_head_answers_as_get_without_a_body(client: TestClient) -> None:
    """RFC 9110 §9.3.2: same status and headers as GET, no content."""
    paths = {
        route.path
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        if route.path and route.methods and "GET" in route.methods
    }
    assert {"/v2/health/live", "/v1/models/{model:tfname}", "/readyz"} <= paths
    for path in sorted(paths):
        if path == "/metrics":
            continue  # its length changes between two calls
        url = _concrete(path)
        got, head = client.get(url, headers=ADMIN), client.head(url, headers=ADMIN)
        assert head.status_code == got.status_code, url
        assert head.content == b"", url
        assert head.headers["content-type"] == got.headers["content-type"], url
        assert head.headers["content-length"] == got.headers["content-length"], url


def test_head_is_listed_in_allow_but_not_in_the_document(client: TestClient) -> None:
    reply = client.post("/v2/health/live")
    assert reply.status_code == 405 and reply.headers["Allow"] == "GET, HEAD"
    doc = client.get("/openapi.json").json()
    assert not any("head" in ops for ops in doc["paths"].values())
    assert all(
        not isinstance(r, APIRoute) or r.methods != {"HEAD"} or not r.include_in_schema
        for r in client.app.routes  # type: ignore[attr-defined]
    )


# --- TF Serving's texts: its URL pattern takes `\d+` versions (abc matches no route:
# "Malformed request"), and version 0 is a servable it does not have.


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (
            "/v1/models/toy/versions/abc:predict",
            404,
            "Malformed request: POST /v1/models/toy/versions/abc:predict",
        ),
        (
            "/v1/models/toy/versions/0:predict",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
        (
            "/v1/models/toy/versions/9:predict",
            404,
            "Servable not found for request: Specific(toy, 9)",
        ),
        (
            "/v1/models/toy/versions/0:classify",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
    ],
)
def test_tf_rest_version_texts(client: TestClient, path: str, status: int, error: str) -> None:
    body = {"instances": [[1, 2, 3, 4]], "examples": [{}]}
    reply = client.post(path, json=body)
    assert (reply.status_code, reply.json()) == (status, {"error": error})


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/v1/models/toy/versions/abc", 404, "Malformed request: GET /v1/models/toy/versions/abc"),
        ("/v1/models/toy/versions/0", 404, "Could not find version 0 of model toy"),
        (
            "/v1/models/toy/versions/0/metadata",
            404,
            "Servable not found for request: Specific(toy, 0)",
        ),
    ],
)
def test_tf_rest_status_and_metadata_version_texts(
    client: TestClient, path: str, status: int, error: str
) -> None:
    reply = client.get(path)
    assert (reply.status_code, reply.json()) == (status, {"error": error})


def test_json_inputs_with_binary_outputs_are_served(client: TestClient) -> None:
    """tritonclient's body for JSON inputs and `binary_data_output`: no binary data follows,
    so no Inference-Header-Content-Length; the answer is binary."""
    tensor = triton_http.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[0, 5, 1, 2]], np.float32), binary_data=False)
    for outputs in (None, [triton_http.InferRequestedOutput("class", binary_data=True)]):
        body, json_size = _get_inference_request([tensor], "", outputs, 0, 0, False, 0, None, None)
        assert json_size is None
        reply = client.post("/v2/models/toy/infer", content=body)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/octet-stream"
        length = int(reply.headers["Inference-Header-Content-Length"])
        assert np.frombuffer(reply.content[length:][-8:], np.int64).tolist() == [1]
