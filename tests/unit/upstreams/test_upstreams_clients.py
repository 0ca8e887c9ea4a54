"""The four clients against stand-in backends on loopback ports, and the factory.

The stand-ins speak the backends' wire (TF Serving's gRPC and REST, TorchServe's gRPC and
REST with the dualserve handler's bodies) and record what they received.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web
from google.protobuf.empty_pb2 import Empty

from backends.process import free_port
from backends.torchserve._proto.inference_pb2 import (
    PredictionResponse,
    PredictionsRequest,
    TorchServeHealthResponse,
)
from gateway._proto.tfserving import (
    GetModelStatusRequest,
    GetModelStatusResponse,
    PredictRequest,
    PredictResponse,
)
from gateway.codecs.tensorproto import from_tensor_map, to_tensor_map
from gateway.core.errors import (
    NotFound,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.core.types import InferRequest
from gateway.settings import TorchServeSettings
from gateway.upstreams.base import Upstream
from gateway.upstreams.kinds.tfserving_grpc import TFServingGrpc
from gateway.upstreams.kinds.tfserving_rest import TFServingRest
from gateway.upstreams.kinds.torchserve_grpc import TorchServeGrpc
from gateway.upstreams.kinds.torchserve_rest import TorchServeRest
from gateway.upstreams.pooled import PooledUpstream
from gateway.upstreams.torchserve_token import TokenSource
from gateway.upstreams.transports.grpc_channels import GrpcWire
from gateway.upstreams.transports.rest_session import RestWire
from tests.unit.gateway.gateway_fakes import serve_aiohttp
from wire.tensor_frames import CONTENT_TYPE as FRAME_CONTENT_TYPE
from wire.tensor_frames import decode_frame, encode_frame

TOKEN = "s3cret"
PIXELS = np.arange(8, dtype=np.float32).reshape(2, 4)


def model_outputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": batch * 2, "class": batch.argmax(axis=1).astype(np.int64)}


@dataclass
class Seen:
    """What the stand-ins received."""

    requests: list[Any] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


async def maybe_slow(model: str) -> None:
    if model == "slow":
        await asyncio.sleep(1.0)


# --- TF Serving gRPC and TorchServe gRPC stand-ins -------------------------------------


def tf_grpc_handlers(seen: Seen) -> tuple[grpc.GenericRpcHandler, ...]:
    async def predict(request: Any, context: grpc.aio.ServicerContext) -> Any:
        seen.requests.append(request)
        await maybe_slow(request.model_spec.name)
        if request.model_spec.name == "nope":
            await context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found for request")
        if request.model_spec.name == "bad":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input: wrong shape")
        reply = PredictResponse()
        reply.model_spec.name = request.model_spec.name
        reply.model_spec.version.value = 7
        outputs = model_outputs(from_tensor_map(request.inputs)["input"])
        wanted = set(request.output_filter) or set(outputs)
        to_tensor_map({k: v for k, v in outputs.items() if k in wanted}, reply.outputs)
        return reply

    async def status(request: Any, context: grpc.aio.ServicerContext) -> Any:
        reply = GetModelStatusResponse()
        if request.model_spec.name == "digits-mlp":
            reply.model_version_status.add(state=30).version = 7
        return reply

    return (
        grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": _unary(predict, PredictRequest, PredictResponse)},
        ),
        grpc.method_handlers_generic_handler(
            "tensorflow.serving.ModelService",
            {"GetModelStatus": _unary(status, GetModelStatusRequest, GetModelStatusResponse)},
        ),
    )


def ts_grpc_handlers(seen: Seen) -> tuple[grpc.GenericRpcHandler, ...]:
    async def predictions(request: Any, context: grpc.aio.ServicerContext) -> Any:
        seen.requests.append(request)
        seen.auth.append(dict(context.invocation_metadata()).get("authorization"))
        await maybe_slow(request.model_name)
        if request.model_name == "nope":
            await context.abort(grpc.StatusCode.NOT_FOUND, "Model not found: nope\norg.x.Exc")
        inputs = decode_frame(request.input["data"])
        return PredictionResponse(prediction=encode_frame(model_outputs(inputs["input"])))

    async def ping(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return TorchServeHealthResponse(health='{"status": "Healthy"}')

    handlers = {
        "Predictions": _unary(predictions, PredictionsRequest, PredictionResponse),
        "Ping": _unary(ping, Empty, TorchServeHealthResponse),
    }
    service = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    return (grpc.method_handlers_generic_handler(service, handlers),)


def _unary(fn: Any, request_cls: Any, response_cls: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn,
        request_deserializer=request_cls.FromString,
        response_serializer=response_cls.SerializeToString,
    )


@asynccontextmanager
async def grpc_backend(handlers: tuple[grpc.GenericRpcHandler, ...]) -> AsyncIterator[str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


# --- TF Serving REST and TorchServe REST stand-ins -------------------------------------


def rest_app(seen: Seen) -> web.Application:
    async def tf_predict(request: web.Request) -> web.Response:
        seen.requests.append((request.path, await request.json()))
        model = request.match_info["rest"].split("/")[0].split(":")[0]
        if model == "nope":
            return web.json_response({"error": "Servable not found for request"}, status=404)
        await maybe_slow(model)
        batch = np.asarray((await request.json())["inputs"]["input"], np.float32)
        outputs = {k: v.tolist() for k, v in model_outputs(batch).items()}
        return web.json_response({"outputs": outputs})

    async def ts_predict(request: web.Request) -> web.Response:
        seen.requests.append((request.path, request.headers.get("Content-Type")))
        seen.auth.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            denied = {"code": 401, "message": "Token Authorization failed"}
            return web.json_response(denied, status=401)
        model = request.match_info["model"]
        if model == "nope":
            body = {"code": 404, "type": "ModelNotFound", "message": "Model not found: nope"}
            return web.json_response(body, status=404)
        if model == "bad":
            return web.json_response({"error": "input: expected shape [-1, 4]"}, status=400)
        await maybe_slow(model)
        inputs = decode_frame(await request.read())
        body = encode_frame(model_outputs(inputs["input"]))
        return web.Response(body=body, content_type=FRAME_CONTENT_TYPE)

    async def tf_status(request: web.Request) -> web.Response:
        if request.match_info["model"] != "digits-mlp":
            return web.json_response({"error": "Could not find any versions"}, status=404)
        return web.json_response({"model_version_status": [{"version": "7", "state": "AVAILABLE"}]})

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy"})

    app = web.Application()
    app.router.add_post("/v1/models/{rest:.*}", tf_predict)
    app.router.add_post("/predictions/{model}", ts_predict)
    app.router.add_post("/predictions/{model}/{version}", ts_predict)
    app.router.add_get("/v1/models/{model}", tf_status)
    app.router.add_get("/ping", ping)
    return app


@asynccontextmanager
async def rest_backend(seen: Seen) -> AsyncIterator[str]:
    async with serve_aiohttp(rest_app(seen)) as url:
        yield url


CODECS: dict[str, Any] = {
    "tf-grpc": TFServingGrpc,
    "tf-rest": TFServingRest,
    "ts-grpc": TorchServeGrpc,
    "ts-rest": TorchServeRest,
}


def backend(kind: str, seen: Seen) -> Any:
    """The stand-in backend of a client kind (an async context manager of its address)."""
    if kind.endswith("rest"):
        return rest_backend(seen)
    return grpc_backend(tf_grpc_handlers(seen) if kind == "tf-grpc" else ts_grpc_handlers(seen))


def make_client(
    kind: str, addresses: list[str], token: TokenSource | None = None, **settings: Any
) -> Upstream:
    """The pooled client of `kind` on `addresses`; `settings` are `UpstreamSettings` fields."""
    transport = "rest" if kind.endswith("rest") else "grpc"
    config = TorchServeSettings(transport=transport, **{transport: addresses}, **settings)
    wire = RestWire(config) if transport == "rest" else GrpcWire(config)
    if kind.startswith("ts"):
        return PooledUpstream(config, CODECS[kind](token or TokenSource(TOKEN)), wire)
    return PooledUpstream(config, CODECS[kind](), wire)


def dead_address(kind: str) -> str:
    port = free_port()  # nothing listens there
    return f"http://127.0.0.1:{port}" if kind.endswith("rest") else f"127.0.0.1:{port}"


def infer(kind: str, request: InferRequest, timeout: float = 5.0, **options: Any) -> Any:
    """Run one request through a client of `kind` and its stand-in; (response, seen)."""
    seen = Seen()

    async def go() -> Any:
        async with backend(kind, seen) as address:
            client = make_client(kind, [address], **options)
            try:
                return await client.infer(request, timeout)
            finally:
                await client.aclose()

    return asyncio.run(go()), seen


KINDS = list(CODECS)


@pytest.mark.parametrize("kind", KINDS)
def test_infer_round_trip(kind: str) -> None:
    request = InferRequest(model="digits-mlp", inputs={"input": PIXELS}, version=3)
    started = time.perf_counter()
    response, _ = infer(kind, request)
    window_s = time.perf_counter() - started  # the stand-in's start, the call, the close
    np.testing.assert_allclose(response.outputs["probabilities"], PIXELS * 2)
    assert response.outputs["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(response.outputs["class"], [3, 3])
    assert response.outputs["class"].dtype == np.int64
    assert response.version == (7 if kind == "tf-grpc" else 3)
    assert response.backend == ("tensorflow" if kind.startswith("tf") else "pytorch")
    assert response.request_id == request.request_id
    assert 0 < response.timings["upstream"] <= window_s  # the wire call, in seconds, enclosed


@pytest.mark.parametrize("kind", ["tf-rest", "ts-grpc", "ts-rest"])
def test_version_asked_for_is_reported_when_the_backend_does_not_say(kind: str) -> None:
    request = InferRequest(
        model="digits-mlp", inputs={"input": PIXELS}, version=9, outputs=["class"]
    )
    response, _ = infer(kind, request)
    assert response.version == 9
    assert list(response.outputs) == ["class"]


def test_tf_grpc_sends_the_model_spec_and_output_filter() -> None:
    request = InferRequest(
        model="digits-mlp",
        inputs={"input": PIXELS},
        version=2,
        outputs=["class"],
        parameters={"signature_name": "serving_default"},
    )
    response, seen = infer("tf-grpc", request)
    sent = seen.requests[0]
    assert (sent.model_spec.name, sent.model_spec.version.value) == ("digits-mlp", 2)
    assert sent.model_spec.signature_name == "serving_default"
    assert list(sent.output_filter) == ["class"]
    assert list(response.outputs) == ["class"]


def test_tf_rest_url_and_body() -> None:
    request = InferRequest(
        model="digits-mlp", inputs={"input": PIXELS}, version=2,
        parameters={"signature_name": "serving_default"},
    )  # fmt: skip
    _, seen = infer("tf-rest", request)
    path, body = seen.requests[0]
    assert path == "/v1/models/digits-mlp/versions/2:predict"
    assert body == {"inputs": {"input": PIXELS.tolist()}, "signature_name": "serving_default"}


def test_torchserve_clients_send_the_token_and_the_version() -> None:
    request = InferRequest(model="digits-mlp", inputs={"input": PIXELS}, version=2)
    _, rest = infer("ts-rest", request)
    _, grpc_seen = infer("ts-grpc", request)
    assert rest.requests[0] == ("/predictions/digits-mlp/2", FRAME_CONTENT_TYPE)
    assert rest.auth == grpc_seen.auth == [f"Bearer {TOKEN}"]
    assert grpc_seen.requests[0].model_version == "2"


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_model_is_not_found(kind: str) -> None:
    with pytest.raises(NotFound, match=r"^(tensorflow|pytorch): model 'nope' not found"):
        infer(kind, InferRequest(model="nope", inputs={"input": PIXELS}))


@pytest.mark.parametrize("kind", ["tf-grpc", "ts-rest"])
def test_bad_input_is_rejected_with_the_backends_words(kind: str) -> None:
    with pytest.raises(UpstreamRejected, match=r"input: .*shape"):
        infer(kind, InferRequest(model="bad", inputs={"input": PIXELS}))


@pytest.mark.parametrize("kind", ["tf-rest", "ts-rest"])
def test_unknown_output_is_rejected(kind: str) -> None:
    with pytest.raises(UpstreamRejected, match="no output 'logits'"):
        infer(kind, InferRequest(model="m", inputs={"input": PIXELS}, outputs=["logits"]))


@pytest.mark.parametrize("kind", KINDS)
def test_slow_backend_times_out(kind: str) -> None:
    with pytest.raises(UpstreamTimeout, match="timed out"):
        infer(kind, InferRequest(model="slow", inputs={"input": PIXELS}), timeout=0.2)


@pytest.mark.parametrize("kind", KINDS)
def test_configured_timeout_caps_the_callers(kind: str) -> None:
    with pytest.raises(UpstreamTimeout):
        infer(kind, InferRequest(model="slow", inputs={"input": PIXELS}), timeout_s=0.2)


def test_wrong_token_is_a_gateway_error() -> None:
    async def go() -> None:
        async with rest_backend(Seen()) as url:
            client = make_client("ts-rest", [url], token=TokenSource("wrong"))
            try:
                await client.infer(InferRequest(model="m", inputs={"input": PIXELS}), 2.0)
            finally:
                await client.aclose()

    with pytest.raises(UpstreamError, match="credentials") as caught:
        asyncio.run(go())
    assert type(caught.value) is UpstreamError


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_backend_is_unavailable(kind: str) -> None:
    async def go() -> None:
        client = make_client(kind, [dead_address(kind)], timeout_s=2.0)
        try:
            await client.infer(InferRequest(model="m", inputs={"input": PIXELS}), 2.0)
        finally:
            await client.aclose()

    with pytest.raises(UpstreamUnavailable, match="no healthy replica"):
        asyncio.run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_replica_is_skipped_and_ready_still_answers(kind: str) -> None:
    async def go() -> tuple[list[int], bool, bool]:
        async with backend(kind, Seen()) as live:
            client = make_client(kind, [dead_address(kind), live], timeout_s=2.0)
            try:
                request = InferRequest(model="digits-mlp", inputs={"input": PIXELS})
                answers = [await client.infer(request, 2.0) for _ in range(3)]
                known, unknown = await client.ready("digits-mlp"), await client.ready("other")
            finally:
                await client.aclose()
        return [len(a.outputs) for a in answers], known, unknown

    counts, known, unknown = asyncio.run(go())
    assert counts == [2, 2, 2]
    assert known
    assert unknown == kind.startswith("ts")  # TorchServe's ping is per server, not per model


def test_torchserve_grpc_error_body_in_an_ok_reply() -> None:
    from gateway.upstreams.failures import Target

    body = json.dumps({"error": "input: expected shape [-1, 64]", "code": 400}).encode()
    request = InferRequest(model="digits-mlp", inputs={"input": PIXELS})
    with pytest.raises(UpstreamRejected, match="expected shape"):
        answer = PredictionResponse(prediction=body)
        TorchServeGrpc().decode(answer, request, Target("pytorch", "digits-mlp"))
