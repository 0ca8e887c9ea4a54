"""The Locust gRPC users run headless for a few seconds against the real stack, and every
user class gets answers with no failure."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
USERS = ("GatewayTFServingUser", "GatewayOipUser", "TFServingDirectUser", "TorchServeDirectUser")
NAMES = (
    "gateway tfserving-grpc Predict",
    "gateway v2-grpc ModelInfer",
    "tfserving direct Predict",
    "torchserve direct Predictions",
)


@pytest.fixture(scope="module")
def run_dir(stack: dict[str, Any]) -> Path:
    return Path(stack["paths"].run_dir)


def test_every_grpc_user_gets_answers_without_failures(run_dir: Path, tmp_path: Path) -> None:
    locust = Path(sys.executable).parent / "locust"
    command = [
        str(locust), "-f", str(ROOT / "loadtest" / "users" / "grpc_users.py"), "--headless",
        "-u", str(len(USERS)), "-r", str(len(USERS)), "-t", "20s",
        "--csv", str(tmp_path / "run"), "--only-summary", *USERS,
    ]  # fmt: skip
    env = {**os.environ, "DUALSERVE_RUN_DIR": str(run_dir), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "run_stats.csv").open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    for name in NAMES:
        assert int(rows[name]["Request Count"]) > 0, rows.keys()
        assert int(rows[name]["Failure Count"]) == 0, name
