"""What tracing costs the gateway: the same gateway with tracing off (the default: only the
W3C trace context is forwarded), on and every request sampled, and on with the sampler
`always_off` (spans made, none recorded), side by side; with `--baseline DIR` also a
gateway run from another checkout (e.g. the commit before tracing), so that "off" can be
compared with no tracing code at all.

    python -m benchmarks.tracing [--duration 3] [--rounds 3] [--concurrency 1,16]
        [--tracing off,sampled,always_off] [--baseline /path/to/other/checkout]

Needs no trained model and no stack: every gateway (one worker, prediction log off)
forwards to one stand-in TF Serving REST backend in this process (a fixed answer), and the
sampled variants export to an OTLP/HTTP sink here too (it answers 200 to every batch).
Rounds are interleaved (`benchmarks.gateway.measure`), REST and gRPC ingress; the CPU per
request is the gateway process tree's (user + system), the figure least moved by a busy
machine. Every request sends a `traceparent`, as a traced client would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
import yaml
from rich.console import Console
from rich.table import Table

from backends.process import LOOPBACK, free_port, port_open, start, stop, wait_until
from benchmarks.gateway import Payloads, Target, _csv, _predict_bytes, measure, summarise
from benchmarks.processes import Running, _pid
from benchmarks.ratios import Row
from tests.unit.gateway.gateway_fakes import make_store

VARIANTS: dict[str, dict[str, str]] = {
    "off": {},
    "sampled": {"OTEL_TRACES_SAMPLER": "always_on"},
    "always_off": {"OTEL_TRACES_SAMPLER": "always_off"},
}
ANSWER = json.dumps({"outputs": {"probabilities": [[0.2, 0.3, 0.5]], "class": [2]}}).encode()
X = np.array([[0.0, 5.0, 1.0, 2.0]], dtype=np.float32)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Answer(BaseHTTPRequestHandler):
    """The stand-in backend (TF Serving's REST predict, one fixed answer) and the OTLP sink
    (200 to every POST): keep-alive, nothing logged."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed ACK

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = ANSWER if self.path.startswith("/v1/models/") else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the bench opens 16+ connections at once
    daemon_threads = True


@contextmanager
def serving() -> Iterator[str]:
    """An `_Answer` server on a free loopback port, in this process, for the block."""
    server = _Server((LOOPBACK, 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _serve_forever(port: int) -> None:
    _Server((LOOPBACK, port), _Answer).serve_forever()


@contextmanager
def backend_process() -> Iterator[str]:
    """The stand-in backend in its own process (not competing with the load's client)."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_forever, args=(port,), daemon=True
    )
    process.start()
    try:
        wait_for_port(port)
        yield f"http://{LOOPBACK}:{port}"
    finally:
        process.terminate()
        process.join(10)


def wait_for_port(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} after {seconds:g} s")
        time.sleep(0.05)


def start_gateway(
    label: str, env: dict[str, str], code: Path, backend: str, folder: Path, stack: ExitStack
) -> Running:
    """One gateway (from the checkout `code`) in front of `backend`, stopped with `stack`."""
    folder.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    config = {
        "port": port,
        "grpc_port": grpc_port,
        "model_store": str(make_store(folder / "store")),
        "tensorflow": {"transport": "rest", "rest": [backend]},
        "pytorch": {"transport": "rest", "rest": [backend]},
        "default_policy": {"mode": "pinned", "primary": "tensorflow", "failover": False},
        "experiments": {"log_enabled": False, "data_dir": str(folder / "data")},
    }
    if "catalog_poll_s" in (code / "gateway" / "settings.py").read_text():
        config["catalog_poll_s"] = 0  # the stand-in serves no status API (older checkouts lack it)
    (folder / "gateway.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "gateway", "--config", str(folder / "gateway.yaml")]
    clean = {k: "" for k in os.environ if k.startswith("OTEL_")}  # only the variant's own
    proc = start(f"gateway-{label}", command, folder, {**clean, **env, "PYTHONPATH": str(code)})
    stack.callback(stop, proc, 10)
    rest = f"http://{LOOPBACK}:{port}"
    wait_until(proc, lambda: httpx.get(f"{rest}/healthz", timeout=2).status_code == 200, 90)
    return Running(rest, f"{LOOPBACK}:{grpc_port}", _pid(proc))


def targets(label: str, gateway: Running) -> list[Target]:
    headers = {"traceparent": TRACEPARENT}
    rest = Target(
        label, "tf", "rest", f"{gateway.rest}/v1/models/toy:predict", headers, gateway.pid
    )
    assert gateway.grpc is not None
    return [rest, Target(label, "tf", "grpc", gateway.grpc, headers, gateway.pid)]


def print_rows(console: Console, rows: list[Row], first: str) -> None:
    """Every row, and each variant's CPU per request relative to `first`'s."""
    table = Table(title=f"tracing variants (CPU = the gateway's user + system; vs {first})")
    for col in ("variant", "in", "conc", "req/s", "p50 ms", "p99 ms", "err", "CPU ms/req", "CPU x"):
        table.add_column(col, justify="right")
    base = {(r.ingress, r.concurrency): r.cpu_ms_per_req for r in rows if r.kind == first}
    for r in rows:
        ratio = r.cpu_ms_per_req / base[(r.ingress, r.concurrency)]
        table.add_row(r.kind, r.ingress, str(r.concurrency), f"{r.throughput:.0f}",
                      f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}", str(r.errors),
                      f"{r.cpu_ms_per_req:.3f}", f"{ratio:.3f}")  # fmt: skip
    console.print(table)


def main(
    duration: Annotated[float, typer.Option(help="seconds per cell")] = 3.0,
    rounds: Annotated[int, typer.Option(help="interleaved repeats of every cell")] = 3,
    concurrency: Annotated[str, typer.Option(help="client concurrency levels")] = "1,16",
    tracing: Annotated[str, typer.Option(help="variants: off, sampled, always_off")] = (
        "off,sampled,always_off"
    ),
    baseline: Annotated[
        Path | None, typer.Option(help="another checkout to run as the variant 'baseline'")
    ] = None,
    run_dir: Path = Path("run/bench-tracing"),
    output: Annotated[Path | None, typer.Option(help="write the rows as JSON")] = None,
) -> None:
    console = Console()
    here = Path(__file__).resolve().parents[1]
    chosen = [(v, VARIANTS[v], here) for v in _csv(tracing)]
    if baseline is not None:
        chosen.insert(0, ("baseline", {}, baseline.resolve()))
    payloads = Payloads(
        [json.dumps({"instances": X.tolist()}).encode()], [_predict_bytes("toy", X)]
    )
    with backend_process() as backend, serving() as sink, ExitStack() as stack:
        every: list[Target] = []
        for label, env, code in chosen:
            if env:
                env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_BSP_SCHEDULE_DELAY": "200"}
            gateway = start_gateway(label, env, code, backend, run_dir.resolve() / label, stack)
            every += targets(label, gateway)
        cells = measure(
            console, every, [int(c) for c in _csv(concurrency)], rounds, duration, payloads
        )
    rows = summarise(cells)
    print_rows(console, rows, chosen[0][0])
    if output is not None:
        output.write_text(json.dumps([r.__dict__ for r in rows], indent=2))


if __name__ == "__main__":
    typer.run(main)
