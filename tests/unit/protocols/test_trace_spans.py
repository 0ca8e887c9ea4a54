"""Spans with tracing on, in process (the app with fake upstreams, spans kept in memory):
REST and gRPC server spans with their status, the `route` span's decision, a failover's
and a shadow call's trace context under it. The integration test
(tests/integration/protocols/test_tracing.py) covers the upstream attempts on real wires."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import create_app
from gateway.core.errors import UpstreamUnavailable
from gateway.telemetry import tracing
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for
from tests.unit.protocols.test_grpc_ingress import predict_request, running

SPEC = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROW = {"instances": [[0.0, 5.0, 1.0, 2.0]]}
V2 = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 5, 1, 2]}]}
SHADOW = {"toy": {"mode": "shadow", "primary": "tensorflow", "failover": True}}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for every app made in the test, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def configure(settings: Any, environ: Any = None) -> bool:
        tracing.TRACER = provider.get_tracer("test")
        return True

    monkeypatch.setattr(tracing, "configure", configure)
    monkeypatch.setattr(tracing, "shutdown", lambda: None)
    monkeypatch.setattr(tracing, "TRACER", None)
    yield exporter
    provider.shutdown()


def app_client(tmp_path: Path, **overrides: Any) -> tuple[Any, dict[str, FakeUpstream]]:
    upstreams = {fw: FakeUpstream(fw) for fw in ("tensorflow", "pytorch")}
    settings = settings_for(make_store(tmp_path), **{"models": SHADOW, **overrides})
    return create_app(settings, upstreams), upstreams  # type: ignore[arg-type]


def of_kind(finished: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in finished if s.kind == kind]


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent(span: ReadableSpan) -> int:
    assert span.parent is not None
    return span.parent.span_id


def test_rest_prediction_spans_failover_and_shadow(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app, upstreams = app_client(tmp_path)
    upstreams["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
    with TestClient(app) as client:
        answer = client.post("/v1/models/toy:predict", json=ROW, headers={"traceparent": SPEC})
        assert answer.status_code == 200 and answer.headers["X-Failover"] == "true"
    finished = spans.get_finished_spans()
    (server,) = of_kind(finished, SpanKind.SERVER)
    (route,) = of_kind(finished, SpanKind.INTERNAL)
    trace_id, server_id = ids(server)
    assert trace_id == int(SPEC[3:35], 16) and parent(server) == int(SPEC[36:52], 16)
    assert server.name == "POST /v1/models/{model:tfname}:predict"
    attributes = dict(server.attributes or {})
    assert attributes["http.response.status_code"] == 200
    assert attributes["dualserve.protocol"] == "tfserving-rest"
    assert answer.headers["traceparent"] == f"00-{trace_id:032x}-{server_id:016x}-01"
    assert parent(route) == server_id
    decided = dict(route.attributes or {})
    assert decided["dualserve.policy.layer"] == "configured"
    assert (decided["dualserve.arm"], decided["dualserve.fallback"]) == ("tensorflow", "pytorch")
    assert decided["dualserve.failover"] is True and decided["dualserve.answered_by"] == "pytorch"
    # The calls' trace contexts: the route span their parent, each named by its kind.
    (failed,) = upstreams["tensorflow"].calls
    assert failed.trace is not None and failed.trace.span is not None
    assert failed.trace.span.get_span_context().span_id == ids(route)[1]
    assert failed.trace.call == "failover"  # the same request object went on to the failover


def test_a_shadow_call_hangs_under_the_route_span(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app, upstreams = app_client(tmp_path)
    with TestClient(app) as client:
        assert client.post("/v1/models/toy:predict", json=ROW).status_code == 200
        deadline = time.monotonic() + 10
        while not upstreams["pytorch"].calls and time.monotonic() < deadline:
            time.sleep(0.01)  # the mirror runs off the reply's path: bounded poll
    (route,) = of_kind(spans.get_finished_spans(), SpanKind.INTERNAL)
    shadow = upstreams["pytorch"].calls[0].trace
    assert shadow is not None and shadow.call == "shadow" and shadow.span is not None
    assert shadow.span.get_span_context().span_id == ids(route)[1]
    assert upstreams["tensorflow"].calls[0].trace.call == "primary"  # type: ignore[union-attr]


@pytest.mark.parametrize(("model", "status", "failed"), [("nope", 404, False), ("toy", 503, True)])
def test_a_rest_server_span_is_an_error_only_for_5xx(
    spans: InMemorySpanExporter, tmp_path: Path, model: str, status: int, failed: bool
) -> None:
    app, upstreams = app_client(tmp_path, default_policy={"mode": "pinned"}, models={})
    for upstream in upstreams.values():
        upstream.fail_with = UpstreamUnavailable(upstream.framework, "down")
    with TestClient(app) as client:
        answer = client.post(f"/v1/models/{model}:predict", json=ROW)
    assert answer.status_code == status and "traceparent" in answer.headers
    (server,) = of_kind(spans.get_finished_spans(), SpanKind.SERVER)
    assert dict(server.attributes or {})["http.response.status_code"] == status
    assert (server.status.status_code == StatusCode.ERROR) is failed


def test_grpc_server_span_names_the_rpc_and_its_status(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    with running(tmp_path, default_policy={"mode": "pinned"}) as gw:
        _, call = gw.predict(predict_request(), metadata=(("traceparent", SPEC),))
        with pytest.raises(grpc.RpcError):
            gw.predict(predict_request(model="nope"), metadata=(("traceparent", SPEC),))
    ok, missing = of_kind(spans.get_finished_spans(), SpanKind.SERVER)
    assert ok.name == missing.name == "tensorflow.serving.PredictionService/Predict"
    attributes = dict(ok.attributes or {})
    assert attributes["rpc.system"] == "grpc" and attributes["rpc.method"] == "Predict"
    assert attributes["rpc.grpc.status_code"] == 0
    assert dict(missing.attributes or {})["rpc.grpc.status_code"] == 5  # NOT_FOUND
    assert missing.status.status_code != StatusCode.ERROR  # a client's error, not the server's
    trace_id, span_id = ids(ok)
    assert dict(call.trailing_metadata())["traceparent"] == f"00-{trace_id:032x}-{span_id:016x}-01"


def test_the_ordinary_path_has_the_same_server_span(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    """With CORS configured predictions take FastAPI's path: the span and the header alike."""
    app, _ = app_client(tmp_path, cors_origins=["https://app.example"], models={})
    with TestClient(app) as client:
        answer = client.post("/v2/models/toy/infer", json=V2, headers={"traceparent": SPEC})
    assert answer.status_code == 200
    (server,) = of_kind(spans.get_finished_spans(), SpanKind.SERVER)
    trace_id, span_id = ids(server)
    assert answer.headers["traceparent"] == f"00-{trace_id:032x}-{span_id:016x}-01"
    assert dict(server.attributes or {})["http.response.status_code"] == 200
    assert parent(server) == int(SPEC[36:52], 16)
