"""Locust users over gRPC: the gateway (TF Serving and Open Inference Protocol) and each
backend directly, with exact per-call timings reported through Locust's `request` event.

    locust -f loadtest/users/grpc_users.py --headless -u 4 -r 4 -t 30s GatewayTFServingUser

Targets come from `run/state.json` (`dualserve up`; another run directory with
DUALSERVE_RUN_DIR) or from DUALSERVE_GATEWAY_GRPC, DUALSERVE_TFSERVING_GRPC,
DUALSERVE_TORCHSERVE_GRPC and DUALSERVE_TORCHSERVE_TOKEN_FILE; Locust's `--host` (host:port)
overrides them. Each call fires Locust's `request` event (type `grpc`), so the runner's
recorder sees gRPC cells like HTTP ones. DUALSERVE_MODEL picks the
model (digits-mlp) and DUALSERVE_PIN pins the gateway's users to one framework. Payloads
are single examples from the digits test set.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from locust import User, constant, events, task
from locust.env import Environment

from backends.torchserve._proto.inference_pb2 import PredictionResponse, PredictionsRequest
from backends.torchserve.launcher import read_token
from dualserve.run_state import RunState, read_state
from gateway._proto import oip
from gateway._proto.tfserving import PREDICT, PredictRequest, PredictResponse
from gateway.codecs.tensorproto import to_tensor_proto
from loadtest.users import openloop, recorder
from trainers.architecture import to_model_input
from trainers.data import load_dataset
from wire.tensor_frames import encode_frame

# Locust runs users as greenlets; grpc must cooperate with gevent before any channel exists.
grpc_gevent.init_gevent()

MODEL = os.environ.get("DUALSERVE_MODEL", "digits-mlp")
TORCHSERVE_PREDICTIONS = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"


@functools.cache
def _state() -> RunState:
    return read_state(Path(os.environ.get("DUALSERVE_RUN_DIR", "run")))


def address(env_var: str, recorded: Callable[[RunState], object]) -> str:
    """An address from the environment variable, else `recorded` of the stack's state file."""
    value = os.environ.get(env_var)
    return str(value) if value else str(recorded(_state()))


@functools.cache
def examples(count: int = 64) -> np.ndarray:
    arch = MODEL.rsplit("-", 1)[-1]
    return to_model_input(load_dataset("digits").test.x[:count], arch).astype(np.float32)


_user_ids = itertools.count()


class GrpcClient:
    """One channel and one unary method; each call fires Locust's `request` event."""

    def __init__(
        self, environment: Environment, target: str, path: str, decode: Callable[[bytes], Any]
    ) -> None:
        self.environment = environment
        self.channel = grpc.insecure_channel(target)
        self.method = self.channel.unary_unary(
            path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=decode
        )

    def call(
        self,
        name: str,
        request: Any,
        metadata: tuple[tuple[str, str], ...] = (),
        context: dict[str, Any] | None = None,
    ) -> Any:
        started = time.perf_counter()
        reply, exception = None, None
        try:
            reply, call = self.method.with_call(request, timeout=30, metadata=metadata)
            recorder.server_timing(dict(call.trailing_metadata() or ()).get("server-timing"))
        except grpc.RpcError as exc:
            exception = exc
        self.environment.events.request.fire(
            request_type="grpc", name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0 if reply is None else reply.ByteSize(),
            exception=exception, context=context or {},
        )  # fmt: skip
        return reply

    def close(self) -> None:
        self.channel.close()


_PREPARED: dict[type, list[Any]] = {}


@events.init.add_listener
def _prepare(environment: Environment, **_: Any) -> None:
    """Build the requests before the test starts, while nothing is timed."""
    for cls in environment.user_classes or []:
        if issubclass(cls, GrpcUser) and not getattr(cls, "abstract", False):
            cls.prepared()


class GrpcUser(User):
    """Base: one prepared request per test example, sent round-robin without pause."""

    abstract = True
    wait_time = constant(0)
    label = "grpc"
    path = ""
    decode: Callable[[bytes], Any] = staticmethod(lambda b: b)  # type: ignore[assignment]

    def target(self) -> str:
        raise NotImplementedError

    @staticmethod
    def build(x: np.ndarray) -> Any:
        raise NotImplementedError

    def metadata(self) -> tuple[tuple[str, str], ...]:
        pin = os.environ.get("DUALSERVE_PIN")
        if pin:
            return (("x-backend", pin),)
        arm = os.environ.get("DUALSERVE_PIN_ARM")  # an arm by name, e.g. torch-pt2
        if arm:
            return (("x-arm", arm),)
        if os.environ.get("DUALSERVE_STICKY"):
            # one routing key per simulated user, as the REST users send X-Routing-Key
            return (("x-routing-key", f"user-{os.getpid()}-{next(_user_ids)}"),)
        return ()

    @classmethod
    def prepared(cls) -> list[Any]:
        """The class's requests, built once per process (not per user: an open-loop cell
        starts 64 users at once, and building them blocked the event loop for seconds)."""
        found = _PREPARED.get(cls)
        if found is None:
            found = _PREPARED[cls] = [cls.build(x[None]) for x in examples()]
        return found

    def on_start(self) -> None:
        # Locust's --host (host:port, optionally grpc://) wins over the state file.
        target = self.host.removeprefix("grpc://") if self.host else self.target()
        self.client = GrpcClient(self.environment, target, self.path, self.decode)
        self.requests = self.prepared()
        self.sent_metadata = self.metadata()
        self.turn = 0

    def on_stop(self) -> None:
        self.client.close()

    @task
    def infer(self) -> None:
        scheduled = openloop.wait_for_turn()  # None in a closed loop
        request = self.requests[self.turn % len(self.requests)]
        self.turn += 1
        context = {} if scheduled is None else {"scheduled_at": scheduled}
        self.client.call(self.label, request, self.sent_metadata, context)


def predict_request(x: np.ndarray) -> Any:
    request = PredictRequest()
    request.model_spec.name = MODEL
    to_tensor_proto(x, request.inputs["input"])
    return request


class GatewayTFServingUser(GrpcUser):
    """TF Serving's `Predict` through the gateway."""

    label = "gateway tfserving-grpc Predict"
    path = PREDICT
    decode = staticmethod(PredictResponse.FromString)

    def target(self) -> str:
        return address("DUALSERVE_GATEWAY_GRPC", lambda state: state.gateway.grpc)

    @staticmethod
    def build(x: np.ndarray) -> Any:
        return predict_request(x)


class GatewayOipUser(GrpcUser):
    """The Open Inference Protocol's `ModelInfer` through the gateway (raw contents)."""

    label = "gateway v2-grpc ModelInfer"
    path = f"/{oip.SERVICE}/ModelInfer"
    decode = staticmethod(oip.ModelInferResponse.FromString)

    def target(self) -> str:
        return address("DUALSERVE_GATEWAY_GRPC", lambda state: state.gateway.grpc)

    @staticmethod
    def build(x: np.ndarray) -> Any:
        request = oip.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="input", datatype="FP32", shape=x.shape)
        request.raw_input_contents.append(x.tobytes())
        return request


class OipDirectUser(GatewayOipUser):
    """`ModelInfer` straight at the bundled OIP server: the `.pt2` export (no gateway)."""

    label = "oip direct ModelInfer"

    def target(self) -> str:
        def recorded(state: RunState) -> object:
            if state.oip is None:
                raise RuntimeError("no OIP server in state.json (the store has no .pt2)")
            return state.oip.grpc

        return address("DUALSERVE_OIP_GRPC", recorded)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class TFServingDirectUser(GatewayTFServingUser):
    """TF Serving's `Predict` straight at the TensorFlow backend (no gateway pin)."""

    label = "tfserving direct Predict"

    def target(self) -> str:
        return address("DUALSERVE_TFSERVING_GRPC", lambda state: state.tensorflow.grpc)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class TorchServeDirectUser(GrpcUser):
    """TorchServe's `Predictions` straight at the PyTorch backend: a tensor frame body
    and the inference token."""

    label = "torchserve direct Predictions"
    path = TORCHSERVE_PREDICTIONS
    decode = staticmethod(PredictionResponse.FromString)

    def target(self) -> str:
        return address("DUALSERVE_TORCHSERVE_GRPC", lambda state: state.pytorch.grpc)

    @staticmethod
    def build(x: np.ndarray) -> Any:
        return PredictionsRequest(model_name=MODEL, input={"data": encode_frame({"input": x})})

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token_file = address(
            "DUALSERVE_TORCHSERVE_TOKEN_FILE", lambda state: state.pytorch.token_file
        )
        return (("authorization", f"Bearer {read_token(Path(token_file), 'inference')}"),)
