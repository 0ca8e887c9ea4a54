"""The optional CloudEvents sink: binary content mode as the CloudEvents 1.0 HTTP binding
defines it (attributes in ce-* headers, the data as the body), sent from the writer
thread; a refused endpoint is counted, never raised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backends.process import free_port
from gateway.capture.cloudevents import EVENT_TYPE, CloudEventsSink, oip_tensor
from gateway.capture.files import CaptureFiles
from gateway.capture.sink import CaptureSink
from tests.unit.capture.test_files import record
from tests.unit.capture.test_sink import outcome


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[tuple[dict[str, str], Any]]]]:
    received: list[tuple[dict[str, str], Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", received
    finally:
        server.shutdown()
        server.server_close()


def test_each_capture_is_one_binary_mode_cloudevent(
    tmp_path: Path, endpoint: tuple[str, list[tuple[dict[str, str], Any]]]
) -> None:
    url, received = endpoint

    def files() -> CaptureFiles:
        return CaptureFiles(tmp_path, 1 << 30, 3600.0, 1e9, None)

    sink = CaptureSink(
        files, {"digits-mlp": 1.0}, 100, 1 << 20, 0.05,
        lambda: CloudEventsSink(url, "test/gateway", 5.0),
    )  # fmt: skip
    sink.start()
    for i in range(3):
        sink.observe(outcome(i))
    assert sink.flush(timeout_s=10)
    sink.close()
    assert sink.counters.cloudevents_sent == 3 and sink.counters.cloudevents_failed == 0
    headers, body = received[0]
    assert headers["ce-specversion"] == "1.0" and headers["ce-type"] == EVENT_TYPE
    assert headers["ce-id"] == "r0" and headers["ce-source"] == "test/gateway"
    assert headers["ce-subject"] == "digits-mlp" and headers["ce-time"].endswith("Z")
    assert headers["content-type"] == "application/json"
    assert body["inputs"] == [
        {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
    ]
    assert body["outputs"][0]["name"] == "probabilities" and body["arm"] == "pytorch"
    assert body["key_hash"] is not None and "user-0" not in json.dumps(body)


def test_a_refused_endpoint_is_counted() -> None:
    events = CloudEventsSink(f"http://127.0.0.1:{free_port()}/", "s", 1.0)
    events.send([record(1), record(2)])
    events.close()
    assert (events.sent, events.failed) == (0, 2)


def test_tensors_take_the_open_inference_protocols_datatypes() -> None:
    assert oip_tensor("c", np.array([3], np.int64))["datatype"] == "INT64"
    assert oip_tensor("b", np.array([b"ab"], object)) == {
        "name": "b", "shape": [1], "datatype": "BYTES", "data": ["ab"],
    }  # fmt: skip
