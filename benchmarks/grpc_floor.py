"""What a transport alone costs per call: grpc.aio against uvicorn, both doing nothing.

The gateway's gRPC ingress costs more CPU per request than its REST ingress (issue 15:
0.696 against 0.453 ms at c=16). This measures how much of that the transports take by
themselves: two servers that answer TF Serving's Predict path with fixed bytes, no
decoding, no upstream, on the same event loop the gateway runs (uvloop):

- `grpc`: a `grpc.aio` server (as `gateway.protocols.grpc.server` builds it: the gateway's server
  options, a generic handler, trailing metadata set) returning pre-serialized bytes;
- `rest`: a raw ASGI app under uvicorn (httptools, as `gateway.processes.workers` runs it)
  returning a fixed JSON body.

The load is `benchmarks.gateway`'s (pre-serialized requests, c=16 and c=1, rounds
interleaved); CPU per request is the server process's user + system time (psutil).

    python -m benchmarks.grpc_floor [--duration 4] [--rounds 3]
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from backends.process import LOOPBACK, free_port, port_open
from benchmarks.gateway import Target, bodies, measure, summarise
from gateway._proto.tfserving import PredictResponse
from gateway.codecs.tensorproto import to_tensor_proto
from gateway.protocols.grpc.tfserving import fill_spec

SERVICE = "tensorflow.serving.PredictionService"


def predict_reply() -> bytes:
    """A serialized PredictResponse like the gateway's: model spec, ten probabilities."""
    response = PredictResponse()
    fill_spec(response.model_spec, "digits-mlp", 1, "serving_default")
    to_tensor_proto(np.linspace(0, 1, 10, dtype=np.float32), response.outputs["probabilities"])
    return bytes(response.SerializeToString())


REPLY = predict_reply()
JSON_REPLY = b'{"predictions": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]]}'
TRAILING = (("x-backend", "tensorflow"), ("server-timing", "total;dur=0.1"))


async def serve_grpc(port: int) -> None:
    """A grpc.aio server answering Predict with `REPLY` until killed."""
    import grpc

    from gateway.protocols.grpc.server import server_options

    async def predict(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        context.set_trailing_metadata(TRAILING)
        return REPLY

    server = grpc.aio.server(options=server_options(4 * 1024 * 1024))
    handler = grpc.unary_unary_rpc_method_handler(predict)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Predict": handler}),)
    )
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    await server.start()
    await server.wait_for_termination()


async def rest_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app answering every request with `JSON_REPLY`."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": JSON_REPLY})


def serve(kind: str, port: int) -> None:
    if kind == "grpc":
        import uvloop

        uvloop.run(serve_grpc(port))
        return
    import uvicorn

    uvicorn.run(
        rest_app, host=LOOPBACK, port=port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False, lifespan="off",
    )  # fmt: skip


@contextmanager
def floors() -> Iterator[list[Target]]:
    """Both servers started as child processes, as benchmark targets; stopped on exit."""
    started: list[subprocess.Popen[bytes]] = []
    targets = []
    try:
        for kind in ("grpc", "rest"):
            port = free_port()
            command = [sys.executable, "-m", "benchmarks.grpc_floor", "--serve", kind]
            proc = subprocess.Popen([*command, "--port", str(port)])
            started.append(proc)
            _wait_listening(proc, port)
            url = f"{LOOPBACK}:{port}"
            if kind == "rest":
                url = f"http://{url}/v1/models/digits-mlp:predict"
            targets.append(Target(f"{kind}-floor", "none", kind, url, {}, proc.pid))
        yield targets
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, attempts: int = 200) -> None:
    for _ in range(attempts):
        if proc.poll() is not None:
            raise RuntimeError(f"the {port} server exited with {proc.returncode}")
        if port_open(port):
            return
        time.sleep(0.05)  # a bounded poll for the child to listen
    raise RuntimeError(f"nothing listens on {port}")


def main(
    duration: Annotated[float, typer.Option(help="seconds per cell")] = 4.0,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 3,
    serve_kind: Annotated[str | None, typer.Option("--serve", help="(internal)")] = None,
    port: Annotated[int, typer.Option(help="(internal) the server's port")] = 0,
) -> None:
    """Measure both floors at c=16 and c=1 and print CPU per request and their ratio."""
    if serve_kind is not None:
        serve(serve_kind, port)
        return
    console = Console(width=120)
    with floors() as targets:
        cells = measure(console, targets, [16, 1], rounds, duration, bodies("digits-mlp"))
    rows = summarise(cells)
    table = Table(title="transport floors: fixed reply, no decoding, no upstream")
    for col in ("server", "c", "req/s", "errors", "CPU ms/req", "p50 ms", "CPU / rest"):
        table.add_column(col, justify="right")
    rest = {r.concurrency: r for r in rows if r.ingress == "rest"}
    for r in rows:
        ratio = r.cpu_ms_per_req / rest[r.concurrency].cpu_ms_per_req
        table.add_row(r.kind, str(r.concurrency), f"{r.throughput:.0f}", str(r.errors),
                      f"{r.cpu_ms_per_req:.3f}", f"{r.p50_ms:.3f}", f"{ratio:.2f}x")  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
