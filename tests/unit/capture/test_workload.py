"""A capture as the load test's workload: its requests as REST bodies, in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.capture.files import CaptureFiles
from loadtest.__main__ import app
from loadtest.targets import capture_bodies
from tests.unit.capture.test_files import record


def test_capture_bodies_are_the_captured_inputs_in_order(tmp_path: Path) -> None:
    files = CaptureFiles(tmp_path, 1 << 30, 3600.0, 1e9, None)
    records = [record(i, batch=1 + i % 2) for i in range(5)]
    files.write(records)
    files.write([record(9, model="digits-cnn")])
    files.close_all()
    bodies = capture_bodies(tmp_path, "digits-mlp")
    assert len(bodies) == 5
    for body, rec in zip(bodies, records, strict=True):
        sent = np.asarray(json.loads(body)["inputs"]["input"], np.float32)
        assert np.array_equal(sent, rec.inputs["input"])
    with pytest.raises(ValueError, match="no request of digits-none"):
        capture_bodies(tmp_path, "digits-none")


def test_a_capture_workload_is_rest_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--capture", str(tmp_path), "--protocols", "rest,grpc"])
    assert result.exit_code != 0 and "--protocols rest" in result.output
