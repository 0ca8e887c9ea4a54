"""TensorFlow's start-up noise is dropped from stderr; every other line still shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
# Lines TensorFlow 2.21 printed on this CPU machine before the filter (issue 26).
NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796591118.689538     977 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796591118.690772     977 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796591127.533625     977 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
REAL_LINES = [
    "E0000 00:00:1796591127.533625     977 saved_model_loader.cc:12] Not found: saved_model.pb",
    "Traceback (most recent call last):",
]
SCRIPT = """
import os, sys
from trainers.tf_quiet import NOISE, native_stderr_without
noise, real = sys.argv[1].split("\\x1e"), sys.argv[2].split("\\x1e")
with native_stderr_without(NOISE):
    for line in noise:
        os.write(2, line.encode() + b"\\n")  # as C++ writes: straight to file descriptor 2
    print(real[0], file=sys.stderr)  # and as Python does
    os.write(2, real[1].encode() + b"\\n")
print("after the block", file=sys.stderr)
"""


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )


def test_noise_is_dropped_and_real_lines_pass_in_order() -> None:
    done = _run("-c", SCRIPT, "\x1e".join(NOISE_LINES), "\x1e".join(REAL_LINES))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [*REAL_LINES, "after the block"]


@pytest.mark.slow
def test_importing_tensorflow_prints_nothing_on_a_cpu_machine() -> None:
    probe = (
        "from trainers.tf_quiet import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "print(tf.constant([1.0, 2.0]).numpy().sum())\n"
    )
    done = _run("-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.0"
    for word in ("oneDNN", "cudart_stub", "cuInit", "absl::InitializeLog", "cuda"):
        assert word not in done.stderr, done.stderr
