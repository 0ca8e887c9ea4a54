"""The recorder inside a Locust process: open-loop latency from the scheduled time, drops
counted only inside the measured window. Run in a child process: importing Locust
monkey-patches the interpreter with gevent, which the rest of the test session must not get."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.telemetry.histogram import LatencyHistogram

SCRIPT = r"""
import sys, time
from pathlib import Path
from loadtest.users.recorder import ProcessRecord

record = ProcessRecord(Path(sys.argv[1]), warmup_s=0.0)
record.on_drop(1.0)                       # before the window opens: not counted
record.on_request(response_time=5.0)      # nor is this answer
now = time.perf_counter()
record.measure_from = now - 10.0
record.on_drop(now - 11.0)                # scheduled before the window: not counted
record.on_drop(now - 1.0)                 # inside: counted
record.on_request(response_time=5.0)      # closed loop: Locust's 5 ms
record.on_request(response_time=5.0, context={"scheduled_at": time.perf_counter() - 0.25})
record.on_request(response_time=1.0, exception=RuntimeError("HTTP 503"))
record.write("local")
"""


def test_open_loop_latency_and_drops_in_the_window(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [path] = tmp_path.glob("process-*.json")
    record = json.loads(path.read_text())
    assert (record["dropped"], record["errors"]) == (1, 1)
    hist = LatencyHistogram.from_json(record["histogram"])
    assert hist.count == 2
    assert 0.0049 < hist.percentile(50) < 0.0051  # Locust's 5 ms
    assert hist.max >= 0.25  # measured from the scheduled time, not Locust's 5 ms
    assert record["error_samples"] == ["HTTP 503"]
