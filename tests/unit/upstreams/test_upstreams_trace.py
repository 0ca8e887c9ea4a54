"""The trace context on the wire: both transports write the request's `traceparent` and
`tracestate` on every call (headers on REST, metadata on gRPC); with tracing on, each
attempt on a replica is its own client span and the backend's parent is that span
(W3C Trace Context Level 1, section 3.5: the parent-id names the caller's operation).

Stand-in backends on loopback ports record what they received."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway._proto.tfserving import PredictRequest, PredictResponse
from gateway.codecs.tensorproto import from_tensor_map, to_tensor_map
from gateway.core.types import InferRequest, TraceContext
from gateway.settings import TFServingSettings
from gateway.telemetry import tracing
from gateway.upstreams.kinds.tfserving_grpc import TFServingGrpc
from gateway.upstreams.kinds.tfserving_rest import TFServingRest
from gateway.upstreams.pooled import PooledUpstream
from gateway.upstreams.transports.grpc_channels import GrpcWire
from gateway.upstreams.transports.rest_session import RestWire
from tests.unit.gateway.gateway_fakes import serve_aiohttp
from tests.unit.upstreams.test_upstreams_clients import dead_address, model_outputs

SPEC = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7"
PIXELS = np.arange(8, dtype=np.float32).reshape(2, 4)
Received = list[tuple[str | None, str | None]]


@asynccontextmanager
async def rest_backend(received: Received) -> AsyncIterator[str]:
    async def predict(request: web.Request) -> web.Response:
        received.append((request.headers.get("traceparent"), request.headers.get("tracestate")))
        batch = np.asarray((await request.json())["inputs"]["input"], np.float32)
        return web.json_response(
            {"outputs": {k: v.tolist() for k, v in model_outputs(batch).items()}}
        )

    app = web.Application()
    app.router.add_post("/v1/models/{rest:.*}", predict)
    async with serve_aiohttp(app) as url:
        yield url


@asynccontextmanager
async def grpc_backend(received: Received) -> AsyncIterator[str]:
    async def predict(request: Any, context: grpc.aio.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata() or ())
        received.append((metadata.get("traceparent"), metadata.get("tracestate")))
        reply = PredictResponse()
        to_tensor_map(model_outputs(from_tensor_map(request.inputs)["input"]), reply.outputs)
        return reply

    handler = grpc.unary_unary_rpc_method_handler(
        predict,
        request_deserializer=PredictRequest.FromString,
        response_serializer=PredictResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService", {"Predict": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def client(transport: str, addresses: list[str]) -> PooledUpstream[Any, Any, Any]:
    settings = TFServingSettings(transport=transport, **{transport: addresses})  # type: ignore[arg-type]
    if transport == "rest":
        return PooledUpstream(settings, TFServingRest(), RestWire(settings))
    return PooledUpstream(settings, TFServingGrpc(), GrpcWire(settings))


def run(transport: str, trace: TraceContext | None, dead_first: bool = False) -> Received:
    """One call through a client of `transport` (a dead replica tried first if asked)."""
    received: Received = []
    backend = rest_backend if transport == "rest" else grpc_backend

    async def go() -> None:
        async with backend(received) as address:
            dead = [dead_address("tf-rest" if transport == "rest" else "tf-grpc")]
            upstream = client(transport, [*dead, address] if dead_first else [address])
            request = InferRequest(
                model="digits-mlp", inputs={"input": PIXELS}, version=1, trace=trace
            )
            try:
                await upstream.infer(request, 5.0)
            finally:
                await upstream.aclose()

    asyncio.run(go())
    return received


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_trace_context_goes_out_as_it_came_with_tracing_off(transport: str) -> None:
    assert run(transport, TraceContext(SPEC, STATE)) == [(SPEC, STATE)]


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_a_request_without_a_trace_context_sends_none(transport: str) -> None:
    assert run(transport, None) == [(None, None)]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "TRACER", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_each_replica_attempt_is_a_client_span_and_the_backend_gets_the_last(
    spans: InMemorySpanExporter, transport: str
) -> None:
    trace = tracing.incoming(SPEC, STATE)
    tracing.start_server(trace, "ingress", {})
    trace = tracing.child(trace, trace.span, "primary")
    received = run(transport, trace, dead_first=True)
    tracing.end(trace.span)

    finished = spans.get_finished_spans()
    attempts = [s for s in finished if s.kind == SpanKind.CLIENT]
    server = next(s for s in finished if s.kind == SpanKind.SERVER)
    assert len(attempts) == 2  # the refused replica, then the one that answered
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    first, answered = dict(attempts[0].attributes or {}), dict(attempts[1].attributes or {})
    assert first["error.type"] == "UpstreamUnavailable"
    assert [parent_id(a) for a in attempts] == [context(server).span_id] * 2
    assert all(context(a).trace_id == int(SPEC[3:35], 16) for a in attempts)
    assert parent_id(server) == int(SPEC[36:52], 16)  # under the client's span
    last = context(attempts[1])
    assert received == [(f"00-{last.trace_id:032x}-{last.span_id:016x}-01", STATE)]
    assert answered["dualserve.call"] == "primary" and answered["dualserve.arm"] == "tensorflow"


def context(span: Any) -> Any:
    assert span.context is not None
    return span.context


def parent_id(span: Any) -> int:
    assert span.parent is not None
    return int(span.parent.span_id)
