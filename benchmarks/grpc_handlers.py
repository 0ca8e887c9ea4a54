"""The gRPC ingress's own work per call, in process: no server, no upstream, no network.

Drives the real method handlers `gateway.protocols.grpc.server` registers (TF Serving's `Predict`
and the Open Inference Protocol's `ModelInfer`: the error boundary, `Call.of`, admission,
auth, decoding, encoding, trailing metadata, the request's parsing and the reply's
serialization) around a data plane that answers at once with a fixed `InferResponse`.
Requests are the model's test examples, pre-serialized (raw FP32 for ModelInfer, as
tritonclient sends). The figure is this process's CPU time per call, the minimum and the
median of `--repeats` loops: steadier than wall time on a shared machine.

    python -m benchmarks.grpc_handlers [--calls 10000] [--repeats 11]
"""

from __future__ import annotations

import asyncio
import time
import types
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from benchmarks.gateway import bodies
from gateway._proto import oip
from gateway.core.types import InferRequest, InferResponse
from gateway.edge.admission import Admission
from gateway.edge.auth import Authenticator
from gateway.edge.boundary import Edge
from gateway.protocols.grpc import oip as grpc_oip
from gateway.protocols.grpc import tfserving as grpc_tfserving
from gateway.settings import GatewaySettings
from gateway.telemetry.metrics import GatewayMetrics
from trainers.architecture import to_model_input
from trainers.data import load_dataset

MODEL = "digits-mlp"
OUTPUTS: dict[str, np.ndarray] = {
    "probabilities": np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10),
    "class": np.array([3], dtype=np.int64),
}


class InstantDataPlane:
    """Answers every request at once with `OUTPUTS` (upstream 0.8 ms, total 1 ms)."""

    async def infer(self, request: InferRequest, protocol: str, strict_dtype: bool = False) -> Any:
        timings = {"upstream": 0.0008, "total": 0.001}
        return InferResponse(request.model, 1, "tensorflow", dict(OUTPUTS), timings=timings)


class SucceedingEdge(Edge):
    """The gateway's edge (admission included), for calls that must all succeed."""

    def error(self, exc: Exception, *args: Any) -> Any:
        raise AssertionError(f"the bench's calls must succeed: {exc!r}")


class FakeContext:
    """What a handler reads from and writes to grpc.aio's servicer context."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-backend", "tensorflow"), ("user-agent", "grpc-python-asyncio/1.85"))

    def time_remaining(self) -> float:
        return 30.0

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    async def abort(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the bench's calls must succeed: {args}")


def _context() -> Any:
    settings = GatewaySettings(auth={"admin_token": "b" * 32})
    return types.SimpleNamespace(
        settings=settings, auth=Authenticator(settings.auth), dataplane=InstantDataPlane(),
        edge=SucceedingEdge(Admission(64), GatewayMetrics(), lambda: [MODEL]),
    )  # fmt: skip


def _handler(generic: Any, method: str) -> Any:
    details = types.SimpleNamespace(method=method, invocation_metadata=())
    return generic.service(details)


def _infer_requests(count: int = 64) -> list[bytes]:
    x = to_model_input(load_dataset("digits").test.x[:count], "mlp").astype(np.float32)
    out = []
    for i in range(len(x)):
        request = oip.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="input", datatype="FP32", shape=list(x[i : i + 1].shape))
        request.raw_input_contents.append(x[i : i + 1].tobytes())
        out.append(request.SerializeToString())
    return out


def per_call(handler: Any, payloads: list[bytes], calls: int, repeats: int) -> list[float]:
    """CPU seconds per call of `calls` calls, once per repeat."""

    async def loop() -> None:
        for i in range(calls):
            message = handler.request_deserializer(payloads[i % len(payloads)])
            reply = await handler.unary_unary(message, FakeContext())
            handler.response_serializer(reply)

    out = []
    for _ in range(repeats):
        started = time.process_time()
        asyncio.run(loop())
        out.append((time.process_time() - started) / calls)
    return out


def cases() -> dict[str, tuple[Any, list[bytes]]]:
    ctx: Any = _context()
    predict = _handler(
        grpc_tfserving.handlers(ctx)[0], "/tensorflow.serving.PredictionService/Predict"
    )
    infer = _handler(grpc_oip.handlers(ctx)[0], f"/{oip.SERVICE}/ModelInfer")
    return {
        "tfserving Predict": (predict, bodies(MODEL).grpc),
        "OIP ModelInfer (raw)": (infer, _infer_requests()),
    }


def main(
    calls: Annotated[int, typer.Option(help="calls per repeat")] = 10_000,
    repeats: Annotated[int, typer.Option(help="repeats; min and median are shown")] = 11,
) -> None:
    """Print each handler's CPU per call."""
    table = Table(title="gRPC ingress handlers, own work per call (process CPU time)")
    for col in ("method", "min us", "median us"):
        table.add_column(col, justify="right")
    for name, (handler, payloads) in cases().items():
        seconds = sorted(per_call(handler, payloads, calls, repeats))
        table.add_row(name, f"{seconds[0] * 1e6:.1f}", f"{seconds[len(seconds) // 2] * 1e6:.1f}")
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
