"""W3C trace context through the ingresses with tracing off (the default): the gateway is a
pass-through for a valid `traceparent` (W3C Trace Context Level 1, section 3.5: forwarded
unchanged, tracestate with it), starts a trace when none or a malformed one came, and
answers with the `traceparent` it forwarded. Fake upstreams record what reached them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.core.errors import UpstreamUnavailable
from gateway.telemetry import tracing
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for
from tests.unit.protocols.test_grpc_ingress import infer_request, predict_request, running

SPEC = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
NEW = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00")
ROW = {"instances": [[0.0, 5.0, 1.0, 2.0]]}
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]}
PATHS = {"/v1/models/toy:predict": ROW, "/v2/models/toy/infer": V2}
PINNED = {"mode": "pinned", "primary": "tensorflow"}  # every call to the tensorflow fake


def _client(tmp_path: Path, **overrides: Any) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    settings = settings_for(make_store(tmp_path), default_policy=PINNED, **overrides)
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    assert tracing.TRACER is None  # off: no OTEL_* in the test's environment
    with TestClient(app) as client:
        yield client, upstreams


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    yield from _client(tmp_path)


@pytest.mark.parametrize("path", PATHS)
def test_a_valid_traceparent_is_forwarded_unchanged_and_answered(
    setup: tuple[TestClient, dict[str, Any]], path: str
) -> None:
    client, upstreams = setup
    answer = client.post(path, json=PATHS[path], headers={"traceparent": SPEC, "tracestate": STATE})
    assert answer.status_code == 200
    trace = upstreams["tensorflow"].calls[0].trace
    assert trace.outgoing == (("traceparent", SPEC), ("tracestate", STATE))
    assert answer.headers["traceparent"] == SPEC


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("given", [None, "00-abc-def-01", SPEC.upper(), "ff" + SPEC[2:]])
def test_none_or_a_malformed_one_starts_a_trace_that_the_answer_names(
    setup: tuple[TestClient, dict[str, Any]], path: str, given: str | None
) -> None:
    client, upstreams = setup
    headers = {"tracestate": STATE} | ({} if given is None else {"traceparent": given})
    answer = client.post(path, json=PATHS[path], headers=headers)
    assert answer.status_code == 200  # never an error
    trace = upstreams["tensorflow"].calls[0].trace
    assert NEW.fullmatch(trace.traceparent) and trace.traceparent != (given or "").lower()
    assert trace.outgoing == (("traceparent", trace.traceparent),)  # no tracestate alone
    assert answer.headers["traceparent"] == trace.traceparent


def test_an_error_answer_carries_the_traceparent_too(
    setup: tuple[TestClient, dict[str, Any]],
) -> None:
    client, _ = setup
    answer = client.post("/v1/models/nope:predict", json=ROW, headers={"traceparent": SPEC})
    assert answer.status_code == 404 and answer.headers["traceparent"] == SPEC


def test_an_oversized_tracestate_is_bounded_before_it_is_forwarded(
    setup: tuple[TestClient, dict[str, Any]],
) -> None:
    client, upstreams = setup
    members = [f"k{i}=" + "v" * 30 for i in range(40)]  # 40 members, 1,3xx characters
    headers = {"traceparent": SPEC, "tracestate": ",".join(members)}
    assert client.post("/v1/models/toy:predict", json=ROW, headers=headers).status_code == 200
    forwarded = upstreams["tensorflow"].calls[0].trace.tracestate
    assert len(forwarded) <= tracing.MAX_TRACESTATE_CHARS
    assert forwarded == ",".join(members[: len(forwarded.split(","))])  # a prefix, whole members


def test_the_ordinary_path_answers_and_forwards_alike(tmp_path: Path) -> None:
    """With CORS configured every route takes FastAPI's path: same propagation."""
    for client, upstreams in _client(tmp_path, cors_origins=["https://app.example"]):
        headers = {"traceparent": SPEC, "Origin": "https://app.example"}
        answer = client.post("/v1/models/toy:predict", json=ROW, headers=headers)
        assert answer.headers["traceparent"] == SPEC
        assert upstreams["tensorflow"].calls[0].trace.traceparent == SPEC
        exposed = answer.headers["access-control-expose-headers"].lower().split(", ")
        assert "traceparent" in exposed  # a browser's script may read it


def test_failover_and_shadow_calls_carry_the_same_trace(tmp_path: Path) -> None:
    policy = {"toy": {"mode": "shadow", "primary": "tensorflow", "failover": True}}
    for client, upstreams in _client(tmp_path, models=policy):
        headers = {"traceparent": SPEC, "tracestate": STATE}
        assert client.post("/v1/models/toy:predict", json=ROW, headers=headers).status_code == 200
        deadline = time.monotonic() + 10
        while not upstreams["pytorch"].calls and time.monotonic() < deadline:
            time.sleep(0.01)  # the mirror runs off the reply's path: bounded poll
        assert upstreams["pytorch"].calls[0].trace.outgoing == (
            ("traceparent", SPEC),
            ("tracestate", STATE),
        )
        upstreams["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
        answer = client.post("/v1/models/toy:predict", json=ROW, headers=headers)
        assert answer.headers["X-Failover"] == "true"
        assert [c.trace.traceparent for c in upstreams["pytorch"].calls[-1:]] == [SPEC]


@pytest.mark.parametrize("method", ["predict", "infer"])
def test_grpc_metadata_is_forwarded_and_trails_the_answer(tmp_path: Path, method: str) -> None:
    with running(tmp_path, default_policy=PINNED) as gw:
        metadata = (("traceparent", SPEC), ("tracestate", STATE))
        call_method = gw.predict if method == "predict" else gw.infer
        message = predict_request() if method == "predict" else infer_request()
        _, call = call_method(message, metadata=metadata)
        assert dict(call.trailing_metadata())["traceparent"] == SPEC
        trace = gw.upstreams["tensorflow"].calls[0].trace
        assert trace is not None
        assert trace.outgoing == (("traceparent", SPEC), ("tracestate", STATE))

        _, call = call_method(message, metadata=(("traceparent", "nonsense"),))
        second = gw.upstreams["tensorflow"].calls[1].trace
        assert second is not None
        started = second.traceparent
        assert NEW.fullmatch(started) and dict(call.trailing_metadata())["traceparent"] == started


def test_a_grpc_error_trails_the_traceparent(tmp_path: Path) -> None:
    with running(tmp_path) as gw:
        with pytest.raises(grpc.RpcError) as failed:
            gw.predict(predict_request(model="nope"), metadata=(("traceparent", SPEC),))
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(failed.value.trailing_metadata())["traceparent"] == SPEC
