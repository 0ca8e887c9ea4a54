"""The gRPC ingress in process with fake upstreams: both protocols, metadata, every
failure class with its exact gRPC status code, health and reflection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway._proto import oip
from gateway._proto.tfserving import (
    GET_MODEL_METADATA,
    GET_MODEL_STATUS,
    PREDICT,
    GetModelMetadataRequest,
    GetModelMetadataResponse,
    GetModelStatusRequest,
    GetModelStatusResponse,
    PredictRequest,
    PredictResponse,
    SignatureDefMap,
)
from gateway.app import create_app
from gateway.codecs.tensorproto import from_tensor_proto, to_tensor_proto
from gateway.core.errors import UpstreamTimeout, UpstreamUnavailable
from tests.unit.gateway.gateway_fakes import FakeUpstream, make_store, settings_for

X = np.array([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 0.0, 1.0]], dtype=np.float32)
INFER = f"/{oip.SERVICE}/ModelInfer"
Code = grpc.StatusCode


class Gateway:
    def __init__(self, channel: grpc.Channel, upstreams: dict[str, FakeUpstream], app: Any):
        self.channel = channel
        self.upstreams = upstreams
        self.app = app

    def call(self, path: str, request: Any, response_type: Any, **kwargs: Any) -> Any:
        method = self.channel.unary_unary(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return method.with_call(request, **kwargs)

    def predict(self, request: Any, **kwargs: Any) -> tuple[Any, grpc.Call]:
        return self.call(PREDICT, request, PredictResponse, **kwargs)

    def infer(self, request: Any, **kwargs: Any) -> tuple[Any, grpc.Call]:
        return self.call(INFER, request, oip.ModelInferResponse, **kwargs)


@contextmanager
def running(tmp_path: Path, **overrides: Any) -> Iterator[Gateway]:
    """The app with its lifespan (so the gRPC ingress) running, and a channel to it."""
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(make_store(tmp_path), grpc_port=0, **overrides)
    app = create_app(settings, upstreams)  # type: ignore[arg-type]
    with TestClient(app), grpc.insecure_channel(f"127.0.0.1:{app.state.grpc_port}") as channel:
        yield Gateway(channel, upstreams, app)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    with running(tmp_path) as gateway:
        yield gateway


def predict_request(x: np.ndarray = X, model: str = "toy", **spec: Any) -> Any:
    request = PredictRequest()
    request.model_spec.name = model
    if "version" in spec:
        request.model_spec.version.value = spec.pop("version")
    for key, value in spec.items():
        setattr(request.model_spec, key, value)
    to_tensor_proto(x, request.inputs["input"])
    return request


def infer_request(x: np.ndarray = X, raw: bool = True, datatype: str = "FP32") -> Any:
    request = oip.ModelInferRequest(model_name="toy", id="req-7")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=x.shape)
    if raw:
        request.raw_input_contents.append(x.tobytes())
    else:
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return request


def trailing(call: grpc.Call) -> dict[str, str]:
    return dict(call.trailing_metadata() or ())


@pytest.mark.parametrize("arm", ["tensorflow", "pytorch"])
def test_predict_answers_from_the_pinned_arm_with_trailing_metadata(gw: Gateway, arm: str) -> None:
    reply, call = gw.predict(
        predict_request(), metadata=[("x-backend", arm), ("x-request-id", "r1")]
    )
    assert from_tensor_proto(reply.outputs["class"]).tolist() == [1, 0]
    assert reply.model_spec.name == "toy" and reply.model_spec.version.value == 2
    assert reply.model_spec.signature_name == "serving_default"
    named = {k: v for k, v in trailing(call).items() if k != "server-timing"}  # its own test
    started = gw.upstreams[arm].calls[0].trace  # none came: the gateway started a trace
    assert started is not None and named.pop("traceparent") == started.traceparent
    assert named == {"x-backend": arm, "x-model-version": "2", "x-request-id": "r1"}
    assert len(gw.upstreams[arm].calls) == 1


def test_model_spec_version_label_and_output_filter(tmp_path: Path) -> None:
    with running(tmp_path, version_labels={"toy": {"stable": 1}}) as gw:
        request = predict_request(version=2)
        request.output_filter.append("class")
        reply, call = gw.predict(request)
        assert list(reply.outputs) == ["class"] and trailing(call)["x-model-version"] == "2"
        reply, call = gw.predict(predict_request(version_label="stable"))
        assert set(reply.outputs) == {"class", "probabilities"}
        assert reply.model_spec.version.value == 1
        # no label is invented: TF Serving knows only the configured ones
        error = _code(gw, PREDICT, predict_request(version_label="latest"), PredictResponse)
        assert error.code() == Code.INVALID_ARGUMENT
        assert error.details() == "Unrecognized servable version label: latest"


def test_signature_name_and_routing_key_reach_the_upstream(gw: Gateway) -> None:
    gw.predict(
        predict_request(signature_name="serving_default"), metadata=[("x-routing-key", "u1")]
    )
    sent = next(c for u in gw.upstreams.values() for c in u.calls)
    assert sent.parameters == {"signature_name": "serving_default"} and sent.routing_key == "u1"


@pytest.mark.parametrize("raw", [True, False])
def test_model_infer_raw_and_typed(gw: Gateway, raw: bool) -> None:
    request = infer_request(raw=raw)
    request.outputs.add(name="class")
    reply, call = gw.infer(request, metadata=[("x-backend", "pytorch")])
    assert reply.id == "req-7" and reply.model_version == "2"
    assert [o.name for o in reply.outputs] == ["class"] and reply.outputs[0].datatype == "INT64"
    if raw:
        assert np.frombuffer(reply.raw_output_contents[0], "<i8").tolist() == [1, 0]
    else:
        assert list(reply.outputs[0].contents.int64_contents) == [1, 0]
    assert trailing(call)["x-backend"] == "pytorch" and trailing(call)["x-request-id"] == "req-7"


def test_metadata_status_and_oip_health_methods(gw: Gateway) -> None:
    meta_request = GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "toy"
    meta, _ = gw.call(GET_MODEL_METADATA, meta_request, GetModelMetadataResponse)
    signatures = SignatureDefMap()
    assert meta.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.inputs["input"].dtype == 1 and len(signature.outputs) == 2
    status_request = GetModelStatusRequest()
    status_request.model_spec.name = "toy"
    status, _ = gw.call(GET_MODEL_STATUS, status_request, GetModelStatusResponse)
    assert [(s.version, s.state) for s in status.model_version_status] == [(2, 30), (1, 30)]
    live, _ = gw.call(f"/{oip.SERVICE}/ServerLive", oip.ServerLiveRequest(), oip.ServerLiveResponse)
    ready, _ = gw.call(
        f"/{oip.SERVICE}/ModelReady",
        oip.ModelReadyRequest(name="toy", version="1"),
        oip.ModelReadyResponse,
    )
    meta2, _ = gw.call(
        f"/{oip.SERVICE}/ModelMetadata",
        oip.ModelMetadataRequest(name="toy"),
        oip.ModelMetadataResponse,
    )
    assert live.live and ready.ready and list(meta2.versions) == ["1", "2"]
    assert meta2.inputs[0].datatype == "FP32" and list(meta2.inputs[0].shape) == [-1, 4]


def _code(gw: Gateway, path: str, request: Any, response_type: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        gw.call(path, request, response_type, **kwargs)
    return caught.value  # type: ignore[return-value]


BAD_SHAPE = np.zeros((2, 5), np.float32)
BAD_DTYPE = np.zeros((2, 4), np.float64)


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (predict_request(BAD_SHAPE), Code.INVALID_ARGUMENT, "expected shape [-1, 4]"),
        (predict_request(BAD_DTYPE), Code.INVALID_ARGUMENT, "expected dtype float32"),
        (predict_request(model="nope"), Code.NOT_FOUND, "unknown model 'nope'"),
        (
            predict_request(version=9),
            Code.NOT_FOUND,
            "Servable not found for request: Specific(toy, 9)",  # TF Serving's words
        ),
        (
            predict_request(version_label="canary"),
            Code.INVALID_ARGUMENT,
            "Unrecognized servable version label: canary",
        ),
        (
            predict_request(signature_name="classify"),
            Code.FAILED_PRECONDITION,
            'Serving signature key "classify" not found.',
        ),
    ],
)
def test_predict_failures_have_tf_serving_codes(
    gw: Gateway, request_: Any, code: Code, words: str
) -> None:
    error = _code(gw, PREDICT, request_, PredictResponse)
    assert error.code() == code and words in error.details()


def test_wrong_input_name_and_unknown_output(gw: Gateway) -> None:
    request = predict_request()
    request.inputs["pixels"].CopyFrom(request.inputs.pop("input"))
    assert _code(gw, PREDICT, request, PredictResponse).code() == Code.INVALID_ARGUMENT
    request = predict_request()
    request.output_filter.append("logits")
    error = _code(gw, PREDICT, request, PredictResponse)
    assert error.code() == Code.INVALID_ARGUMENT  # TF Serving's words (signature.py mirrors them)
    assert error.details() == (
        "output tensor alias not found in signature: logits "
        "Outputs expected to be in the set {class,probabilities}."
    )


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (
            infer_request(X.astype(np.float64), datatype="FP64"),
            Code.INVALID_ARGUMENT,
            "expected dtype float32",
        ),
        (infer_request(BAD_SHAPE), Code.INVALID_ARGUMENT, "expected shape"),
        (oip.ModelInferRequest(model_name="toy"), Code.INVALID_ARGUMENT, "no inputs"),
        (infer_request(datatype="FP99"), Code.INVALID_ARGUMENT, "unsupported datatype 'FP99'"),
        (
            oip.ModelInferRequest(
                model_name="nope",
                inputs=[{"name": "input", "datatype": "FP32", "shape": [1, 4]}],
                raw_input_contents=[bytes(16)],
            ),
            Code.NOT_FOUND,
            "unknown model 'nope'",
        ),
    ],
)
def test_model_infer_failures_have_triton_codes(
    gw: Gateway, request_: Any, code: Code, words: str
) -> None:
    error = _code(gw, INFER, request_, oip.ModelInferResponse)
    assert error.code() == code and words in error.details()
    assert dict(error.trailing_metadata() or ())["x-request-id"]


def test_bad_pin_and_unknown_version_on_model_ready(gw: Gateway) -> None:
    error = _code(gw, PREDICT, predict_request(), PredictResponse, metadata=[("x-backend", "jax")])
    assert error.code() == Code.INVALID_ARGUMENT and "x-backend" in error.details()
    # Triton answers `ready: false` for a model or version it does not serve (REST: 4xx)
    for name, version in (("toy", "7"), ("nope", "")):
        reply, _ = gw.call(
            f"/{oip.SERVICE}/ModelReady",
            oip.ModelReadyRequest(name=name, version=version),
            oip.ModelReadyResponse,
        )
        assert reply.ready is False


def test_backend_down_without_failover_is_unavailable(gw: Gateway) -> None:
    gw.upstreams["pytorch"].fail_with = UpstreamUnavailable("pytorch", "connection refused")
    error = _code(
        gw, PREDICT, predict_request(), PredictResponse, metadata=[("x-backend", "pytorch")]
    )
    assert error.code() == Code.UNAVAILABLE and "pytorch" in error.details()
    error = _code(
        gw, INFER, infer_request(), oip.ModelInferResponse, metadata=[("x-backend", "pytorch")]
    )
    assert error.code() == Code.UNAVAILABLE


def test_failover_is_reported_in_trailing_metadata(gw: Gateway) -> None:
    gw.upstreams["tensorflow"].fail_with = UpstreamUnavailable("tensorflow", "down")
    for key in (f"user-{i}" for i in range(40)):
        _, call = gw.predict(predict_request(), metadata=[("x-routing-key", key)])
        assert trailing(call)["x-backend"] == "pytorch"
    assert any(len(c.calls) for c in gw.upstreams.values())


def test_deadline_exceeded_from_client_deadline_and_upstream_timeout(gw: Gateway) -> None:
    gw.upstreams["tensorflow"].delay = 2.0
    pinned = [("x-backend", "tensorflow")]
    error = _code(gw, PREDICT, predict_request(), PredictResponse, metadata=pinned, timeout=0.3)
    assert error.code() == Code.DEADLINE_EXCEEDED
    gw.upstreams["tensorflow"].delay = 0.0
    gw.upstreams["tensorflow"].fail_with = UpstreamTimeout("tensorflow", "no answer within 0.2 s")
    error = _code(gw, INFER, infer_request(), oip.ModelInferResponse, metadata=pinned)
    assert error.code() == Code.DEADLINE_EXCEEDED and "tensorflow" in error.details()


def test_api_keys_in_metadata(tmp_path: Path) -> None:
    with running(tmp_path, auth={"admin_token": "a", "api_keys": ["k1"]}) as gateway:
        error = _code(gateway, PREDICT, predict_request(), PredictResponse)
        assert error.code() == Code.UNAUTHENTICATED and "API key" in error.details()
        error = _code(
            gateway, INFER, infer_request(), oip.ModelInferResponse, metadata=[("x-api-key", "bad")]
        )
        assert error.code() == Code.UNAUTHENTICATED
        gateway.predict(predict_request(), metadata=[("authorization", "Bearer k1")])
        gateway.infer(infer_request(), metadata=[("x-api-key", "k1")])


def test_messages_over_the_limit_are_resource_exhausted(tmp_path: Path) -> None:
    big = np.zeros((100, 4), np.float32)  # 1.6 kB of tensor_content
    with running(tmp_path, max_body_bytes=1024) as gateway:
        error = _code(gateway, PREDICT, predict_request(big), PredictResponse)
        assert error.code() == Code.RESOURCE_EXHAUSTED
        gateway.predict(predict_request())  # small ones still pass


def test_errors_are_counted_like_rest_errors(gw: Gateway) -> None:
    _code(gw, PREDICT, predict_request(BAD_SHAPE), PredictResponse)
    text = gw.app.state.gateway.metrics.render().decode()
    assert 'protocol="tfserving-grpc"' in text and 'status="400"' in text


def test_health_follows_readiness_and_reflection_lists_services(gw: Gateway) -> None:
    health = health_pb2_grpc.HealthStub(gw.channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    for upstream in gw.upstreams.values():
        upstream.fail_with = UpstreamUnavailable(upstream.framework, "down")
    reply = health.Check(health_pb2.HealthCheckRequest(service=oip.SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(gw.channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    services = {
        s.name for s in next(stub.ServerReflectionInfo(iter([ask]))).list_services_response.service
    }
    assert {
        "tensorflow.serving.PredictionService",
        oip.SERVICE,
        "grpc.health.v1.Health",
    } <= services
    ask = reflection_pb2.ServerReflectionRequest(file_containing_symbol=oip.SERVICE)
    answer = next(stub.ServerReflectionInfo(iter([ask])))
    assert answer.file_descriptor_response.file_descriptor_proto


def test_x_arm_metadata_pins_an_arm_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    arms = {"tf-v1": {"framework": "tensorflow", "version": 1},
            "pt-v2": {"framework": "pytorch", "version": 2}}  # fmt: skip
    policy = {"toy": {"arms": arms, "weights": {"tf-v1": 0, "pt-v2": 1}}}
    with running(tmp_path, models=policy) as gw:
        _, call = gw.predict(predict_request(), metadata=[("x-arm", "tf-v1")])
        assert (trailing(call)["x-backend"], trailing(call)["x-model-version"]) == (
            "tensorflow",
            "1",
        )
        _, call = gw.infer(infer_request(), metadata=[("x-arm", "pt-v2")])
        assert (trailing(call)["x-backend"], trailing(call)["x-model-version"]) == ("pytorch", "2")
        error = _code(gw, PREDICT, predict_request(), PredictResponse, metadata=[("x-arm", "x")])
        assert error.code() == Code.INVALID_ARGUMENT
        assert "x-arm" in error.details() and "known arms: pt-v2, tf-v1" in error.details()
