"""A hung test fails with its name (pytest-timeout, configured in pyproject.toml) instead of
eating CI's 90 minutes; here with the bound lowered to 2 s on a test that waits forever."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HUNG = """
import threading

def test_waits_forever():
    threading.Event().wait()  # never set
"""


def test_the_configured_timeout_is_generous_and_uses_the_thread_method() -> None:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert options["timeout_method"] == "thread"
    assert 600 <= options["timeout"] < 5400  # above the slowest real test, below CI's bound


def test_a_hung_test_is_stopped_and_named(tmp_path: Path) -> None:
    (tmp_path / "test_hung.py").write_text(HUNG)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-o", "timeout=2", str(tmp_path / "test_hung.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Timeout" in output and "test_waits_forever" in output, output[-2000:]
