"""OpenTelemetry end to end: a real gateway process with tracing switched on by the SDK's
environment, a real OTLP/HTTP receiver on loopback, and stand-in backends on the real
wires (TF Serving's REST API, TorchServe's gRPC API) that record the `traceparent` they got.

For each ingress (TF Serving REST, v2 REST, TF Serving gRPC, OIP gRPC) one predict with a
given `traceparent`: the spans of that trace arrive (the ingress's server span under the
client's parent, `route` under it, one client span per upstream attempt under `route`), and
the backend received that trace with the attempt's span as its parent (W3C Trace Context:
the parent-id is the caller's span). A failover shows both attempts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from backends.process import free_port
from backends.torchserve._proto.inference_pb2 import PredictionResponse, PredictionsRequest
from gateway._proto import oip
from gateway._proto.tfserving import PREDICT, PredictRequest, PredictResponse
from gateway.codecs.tensorproto import to_tensor_proto
from tests.unit.gateway.gateway_fakes import make_store, toy_outputs
from wire.tensor_frames import decode_frame, encode_frame

X = [[0.0, 5.0, 1.0, 2.0]]
FAILING = "fa11"  # the TF stand-in answers 500 to a trace id that starts so
SERVER, CLIENT, INTERNAL = 2, 3, 1  # OTLP's SpanKind
ERROR = 2  # OTLP's Status.STATUS_CODE_ERROR
WAIT_S = 30.0


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent: str
    name: str
    kind: int
    status: int
    service: str
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


class Receiver:
    """An OTLP/HTTP trace receiver: decodes each `ExportTraceServiceRequest` it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.take(ExportTraceServiceRequest.FromString(body), self.path)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: Any, path: str) -> None:
        assert path == "/v1/traces"  # the OTLP/HTTP path the SDK adds to the endpoint
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        Span(
                            s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name,
                            s.kind, s.status.code, resource.get("service.name", ""),
                            {a.key: _value(a.value) for a in s.attributes},
                        )
                    )  # fmt: skip
        with self.changed:
            self.spans += spans
            self.changed.notify_all()

    def trace(self, trace_id: str, count: int) -> list[Span]:
        """The spans of `trace_id`, once at least `count` arrived (bounded wait)."""
        deadline = time.monotonic() + WAIT_S
        with self.changed:
            while True:
                found = [s for s in self.spans if s.trace_id == trace_id]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self.changed.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Seen:
    """The trace context each stand-in backend received, in order."""

    tf: list[tuple[str | None, str | None]] = field(default_factory=list)
    torch: list[tuple[str | None, str | None]] = field(default_factory=list)


def tf_rest_backend(seen: Seen) -> ThreadingHTTPServer:
    """TF Serving's REST predict (columnar JSON in and out), recording trace headers."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            traceparent = self.headers.get("traceparent")
            seen.tf.append((traceparent, self.headers.get("tracestate")))
            if traceparent and traceparent[3:].startswith(FAILING):
                self._answer(500, {"error": "stand-in failure"})
                return
            outputs = toy_outputs(np.asarray(body["inputs"]["input"], np.float32))
            self._answer(200, {"outputs": {k: v.tolist() for k, v in outputs.items()}})

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def torchserve_grpc_backend(seen: Seen) -> tuple[grpc.Server, str]:
    """TorchServe's gRPC `Predictions` (tensor frames), recording trace metadata."""

    def predictions(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = dict(context.invocation_metadata())
        seen.torch.append((metadata.get("traceparent"), metadata.get("tracestate")))
        inputs = decode_frame(request.input["data"])
        return PredictionResponse(prediction=encode_frame(toy_outputs(inputs["input"])))

    handler = grpc.unary_unary_rpc_method_handler(
        predictions,
        request_deserializer=PredictionsRequest.FromString,
        response_serializer=PredictionResponse.SerializeToString,
    )
    service = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, {"Predictions": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class Stack:
    rest: str
    grpc_target: str
    receiver: Receiver
    seen: Seen
    tf_port: int
    torch_port: int


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited at start"
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a start-up, bounded above
    raise AssertionError("the gateway did not answer /healthz within 60 s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("tracing")
    seen, receiver = Seen(), Receiver()
    tf_server = tf_rest_backend(seen)
    torch_server, torch_address = torchserve_grpc_backend(seen)
    tf_port = tf_server.server_address[1]
    port, grpc_port = free_port(), free_port()
    config = {
        "port": port,
        "grpc_port": grpc_port,
        "model_store": str(make_store(root / "store")),
        "catalog_poll_s": 0,
        "tensorflow": {"transport": "rest", "rest": [f"http://127.0.0.1:{tf_port}"]},
        "pytorch": {"transport": "grpc", "grpc": [torch_address]},
        "default_policy": {"mode": "pinned", "primary": "tensorflow", "failover": True},
        "auth": {"admin_token": "admin-secret"},
    }
    config_file = root / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,  # the SDK's own switch
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after each request
    }
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config_file)], env=env
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", process)
        yield Stack(
            f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", receiver, seen, tf_port,
            int(torch_address.rpartition(":")[2]),
        )  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        tf_server.shutdown()
        tf_server.server_close()
        torch_server.stop(grace=None)
        receiver.close()


def _traceparent(prefix: str = "") -> tuple[str, str, str]:
    trace_id = (prefix + os.urandom(16).hex())[:32]
    parent = os.urandom(8).hex()
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def predict(stack: Stack, ingress: str, traceparent: str) -> str:
    """One predict through `ingress` carrying `traceparent` (and a tracestate); the
    `traceparent` the answer carries."""
    headers = {"traceparent": traceparent, "tracestate": "rojo=00f067aa0ba902b7"}
    if ingress == "tf-rest":
        answer = httpx.post(
            f"{stack.rest}/v1/models/toy:predict", json={"instances": X}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        return answer.headers["traceparent"]
    if ingress == "v2-rest":
        body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X[0]}]}
        answer = httpx.post(f"{stack.rest}/v2/models/toy/infer", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.headers["traceparent"]
    with grpc.insecure_channel(stack.grpc_target) as channel:
        if ingress == "tf-grpc":
            request: Any = PredictRequest()
            request.model_spec.name = "toy"
            to_tensor_proto(np.asarray(X, np.float32), request.inputs["input"])
            path, reply_type = PREDICT, PredictResponse
        else:
            request = oip.ModelInferRequest(model_name="toy")
            request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
            request.raw_input_contents.append(np.asarray(X, np.float32).tobytes())
            path, reply_type = f"/{oip.SERVICE}/ModelInfer", oip.ModelInferResponse
        method = channel.unary_unary(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply_type.FromString,
        )
        _, call = method.with_call(request, metadata=tuple(headers.items()), timeout=10)
        return str(dict(call.trailing_metadata() or ())["traceparent"])


def one(spans: list[Span], kind: int) -> Span:
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def split(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    version, trace_id, parent, flags = traceparent.split("-")
    assert version == "00" and flags == "01"  # sampled (OTEL_TRACES_SAMPLER's default)
    return trace_id, parent


@pytest.mark.parametrize(
    ("ingress", "semantic"),
    [
        ("tf-rest", {"http.request.method": "POST", "http.response.status_code": 200}),
        ("v2-rest", {"http.request.method": "POST", "http.response.status_code": 200}),
        ("tf-grpc", {"rpc.system": "grpc", "rpc.method": "Predict", "rpc.grpc.status_code": 0}),
        ("oip-grpc", {"rpc.system": "grpc", "rpc.method": "ModelInfer"}),
    ],
)
def test_one_predict_per_ingress_is_traced_to_the_backend(
    stack: Stack, ingress: str, semantic: dict[str, Any]
) -> None:
    traceparent, trace_id, client_parent = _traceparent()
    before = len(stack.seen.tf)
    answered = predict(stack, ingress, traceparent)

    spans = stack.receiver.trace(trace_id, 3)
    server, route, attempt = one(spans, SERVER), one(spans, INTERNAL), one(spans, CLIENT)
    assert server.parent == client_parent  # the gateway joined the client's trace
    assert server.service == "dualserve-gateway"
    assert semantic.items() <= server.attributes.items()
    assert route.parent == server.span_id and route.name == "route"
    assert route.attributes["dualserve.policy.layer"] == "configured"
    assert route.attributes["dualserve.arm"] == "tensorflow"
    assert route.attributes["dualserve.answered_by"] == "tensorflow"
    assert route.attributes["dualserve.failover"] is False
    assert attempt.parent == route.span_id and attempt.status != ERROR
    assert {
        "dualserve.arm": "tensorflow",
        "dualserve.model": "toy",
        "dualserve.version": 2,
        "dualserve.call": "primary",
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": stack.tf_port,
        "http.response.status_code": 200,
    }.items() <= attempt.attributes.items()

    # The backend got the same trace, its parent the gateway's upstream attempt.
    received, state = stack.seen.tf[before]
    assert split(received) == (trace_id, attempt.span_id)
    assert state == "rojo=00f067aa0ba902b7"  # tracestate passed through
    assert split(answered) == (trace_id, server.span_id)  # the answer names the gateway's span


def test_a_failover_shows_both_attempts_and_the_second_backend_gets_the_trace(
    stack: Stack,
) -> None:
    traceparent, trace_id, _ = _traceparent(FAILING)
    tf_before, torch_before = len(stack.seen.tf), len(stack.seen.torch)
    predict(stack, "tf-rest", traceparent)

    spans = stack.receiver.trace(trace_id, 4)
    route = one(spans, INTERNAL)
    attempts = {s.attributes["dualserve.call"]: s for s in spans if s.kind == CLIENT}
    assert set(attempts) == {"primary", "failover"}
    primary, failover = attempts["primary"], attempts["failover"]
    assert primary.parent == failover.parent == route.span_id
    assert primary.status == ERROR and primary.attributes["dualserve.arm"] == "tensorflow"
    assert failover.status != ERROR and failover.attributes["dualserve.arm"] == "pytorch"
    assert {
        "rpc.system": "grpc",
        "rpc.service": "org.pytorch.serve.grpc.inference.InferenceAPIsService",
        "rpc.method": "Predictions",
        "server.port": stack.torch_port,
    }.items() <= failover.attributes.items()
    assert route.attributes["dualserve.failover"] is True
    assert route.attributes["dualserve.answered_by"] == "pytorch"
    assert split(stack.seen.tf[tf_before][0]) == (trace_id, primary.span_id)
    assert split(stack.seen.torch[torch_before][0]) == (trace_id, failover.span_id)
