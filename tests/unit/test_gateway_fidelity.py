"""The gateway's REST ingress against the references, in process with fake upstreams:
NaN/Infinity and float32 (TF Serving's REST API "JSON Mapping"), Content-Encoding (RFC 9110
§8.4), version labels (TF Serving's model config), URL forms (TF Serving's REST API) and
405 with `Allow` (RFC 9110 §15.5.6). The same behaviours against the real servers are in
tests/integration/test_conformance.py."""

from __future__ import annotations

import gzip
import math
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route

from wire import tfserving_json
from gateway.app import create_app
from tests.unit.gateway_fakes import FakeUpstream, make_store, settings_for

ROW = b'{"instances": [[NaN, 5.0, Infinity, -Infinity], [3.0, 0.0, 0.0, 1.0]]}'
V2 = b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 0, 9, 0]}]}'
ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(
        make_store(tmp_path), max_body_bytes=65536, version_labels={"toy": {"stable": 1}}
    )
    with TestClient(create_app(settings, upstreams)) as test_client:  # type: ignore[arg-type]
        yield test_client


def test_nan_and_infinity_in_and_out_on_tf_serving_rest(client: TestClient) -> None:
    reply = client.post("/v1/models/toy:predict", content=ROW)
    assert reply.status_code == 200, reply.text
    assert reply.text.startswith('{"predictions":[{"class":0,"probabilities":[NaN,NaN,NaN]')
    second = tfserving_json.loads(reply.content)["predictions"][1]["probabilities"]
    assert all(math.isfinite(p) for p in second)


def test_nan_in_and_out_on_v2_rest(client: TestClient) -> None:
    reply = client.post("/v2/models/toy/infer", content=V2)
    assert reply.status_code == 200, reply.text
    assert '"data":[NaN,NaN,NaN]' in reply.text


@pytest.mark.parametrize("path", ["/v1/models/toy:predict", "/v2/models/toy/infer"])
def test_float32_outputs_are_written_as_float32(client: TestClient, path: str) -> None:
    row = b'{"instances": [[0.3, 2.0, 1.0, 0.0]]}'
    body = row if path.startswith("/v1") else V2.replace(b"NaN", b"0.3")
    text = client.post(path, content=body).text
    numbers = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)
    assert numbers, text
    for number in numbers:  # reads back as the same float32, in at most 9 digits
        assert len(number.replace(".", "").lstrip("0")) <= 9
        assert str(np.float32(number)) == number


CODINGS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
]


@pytest.mark.parametrize(("coding", "compress"), CODINGS)
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/models/toy:predict", ROW, 200),
        ("POST", "/v2/models/toy/infer", V2, 200),
        ("POST", "/v1/feedback", b'{"request_id": "nope", "label": 1}', 404),
        ("PUT", "/admin/models/toy/policy", b'{"mode": "pinned", "primary": "pytorch"}', 200),
    ],
)
def test_compressed_bodies_are_read_on_every_rest_ingress(
    client: TestClient,
    coding: str,
    compress: Callable[[bytes], bytes],
    method: str,
    path: str,
    body: bytes,
    status: int,
) -> None:
    headers = {"Content-Encoding": coding, **ADMIN}
    reply = client.request(method, path, content=compress(body), headers=headers)
    plain = client.request(method, path, content=body, headers=ADMIN)
    assert (reply.status_code, plain.status_code) == (status, status), reply.text


def test_a_small_body_that_inflates_past_the_limit_is_413(client: TestClient) -> None:
    bomb = gzip.compress(b" " * 50_000_000)
    assert len(bomb) < 65536
    reply = client.post(
        "/v1/models/toy:predict", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert reply.status_code == 413
    assert reply.json() == {
        "error": "request body decodes to more than the limit of 65536 bytes (max_body_bytes)"
    }


@pytest.mark.parametrize("path", ["/v1/models/toy:predict", "/v2/models/toy/infer", "/v1/feedback"])
def test_an_unknown_coding_is_415_naming_the_accepted_ones(client: TestClient, path: str) -> None:
    reply = client.post(path, content=ROW, headers={"Content-Encoding": "br"})
    assert reply.status_code == 415
    assert reply.headers["Accept-Encoding"] == "gzip, deflate"  # RFC 9110 §12.5.3
    assert (
        reply.json()["error"] == "unsupported Content-Encoding 'br'; send gzip, deflate or identity"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/toy/labels/stable",
        "/v1/models/toy/labels/stable/metadata",
        "/v1/models/toy/versions/1/metadata",
    ],
)
def test_configured_labels_and_versions_resolve(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200, reply.text
    version = (
        reply.json().get("model_spec", {}).get("version")
        or reply.json()["model_version_status"][0]["version"]
    )
    assert version == "1"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/toy/labels/latest"),
        ("GET", "/v1/models/toy/labels/canary/metadata"),
        ("POST", "/v1/models/toy/labels/latest:predict"),
        ("POST", "/v1/models/toy/labels/canary:classify"),
    ],
)
def test_unknown_labels_are_tf_servings_400(client: TestClient, method: str, path: str) -> None:
    label = path.split("/labels/")[1].split("/")[0].split(":")[0]
    body = b'{"instances": [[0, 0, 0, 0]], "examples": [{"x": 1}]}'
    reply = client.request(method, path, content=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": f"Unrecognized servable version label: {label}"}


@pytest.mark.parametrize("api", ["classify", "regress"])
@pytest.mark.parametrize("prefix", ["", "/versions/1", "/labels/stable"])
def test_classify_and_regress_answer_tf_servings_signature_error(
    client: TestClient, api: str, prefix: str
) -> None:
    reply = client.post(f"/v1/models/toy{prefix}:{api}", json={"examples": [{"x": 1}]})
    assert reply.status_code == 400
    kind = {"classify": "classification", "regress": "regression"}[api]
    assert reply.json()["error"] == (
        f"Expected {kind} signature method_name to be tensorflow/serving/{api}. "
        "Was: tensorflow/serving/predict"
    )


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "1" if m[1] == "version" else "toy", path)


def _routes(routes: list[BaseRoute]) -> Iterator[Route]:
    """Every route, also those of included routers (FastAPI keeps them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _routes(nested.routes)
        elif isinstance(route, Route) and route.methods:
            yield route


def test_every_route_answers_405_with_allow_for_other_methods(client: TestClient) -> None:
    """RFC 9110 §15.5.6: a 405 response MUST carry `Allow` listing the target's methods."""
    checked = 0
    for route in _routes(client.app.routes):  # type: ignore[attr-defined]
        assert route.methods is not None
        method = next(m for m in ("PATCH", "DELETE", "PUT", "POST") if m not in route.methods)
        reply = client.request(method, _concrete(route.path), headers=ADMIN)
        if reply.status_code != 405:  # another route takes this method on the same path
            continue
        allowed = {m.strip() for m in reply.headers["Allow"].split(",")}
        assert allowed and allowed <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}
        assert method not in allowed, (route.path, allowed)
        checked += 1
    assert checked >= 20
    reply = client.get("/v1/models/toy:predict")
    assert (reply.status_code, reply.headers["Allow"]) == (405, "POST")
    assert orjson.loads(reply.content) == {"error": "Method Not Allowed"}


def test_the_tf_serving_rest_upstream_sends_and_reads_nan() -> None:
    """With `tensorflow.transport: rest` the gateway speaks TF Serving's JSON to the
    backend: NaN inputs go out as `NaN`, NaN answers come back as float32 NaN."""
    from gateway.upstreams.kinds.bodies import columnar_json, columnar_outputs
    from gateway.upstreams.failures import Target

    sent = columnar_json({"input": np.array([[np.nan, 1.5]], np.float32)})
    assert sent == b'{"inputs":{"input":[[NaN,1.5]]}}'
    answer = b'{"outputs": {"probabilities": [[NaN, 0.25]], "class": [0]}}'
    outputs = columnar_outputs(answer, [], Target("tensorflow", "toy"))
    assert outputs["probabilities"].dtype == np.float32
    assert np.isnan(outputs["probabilities"][0, 0]) and outputs["probabilities"][0, 1] == 0.25
