"""Open a report in Debian's headless Chromium: its DOM (for tests) or a screenshot (docs).

Chromium runs offline-minded (no background networking, sync or component updates)
with a throw-away profile, and is bounded by a timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(page: Path, extra: list[str], timeout: float) -> str:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed: run scripts/setup.sh")
    with tempfile.TemporaryDirectory(prefix="dualserve-chromium-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-800:]}")
    return done.stdout


def dump_dom(page: Path, timeout: float = 60.0) -> str:
    """The DOM after Chromium rendered `page`."""
    return _run(page, ["--dump-dom"], timeout)


def screenshot(
    page: Path, png: Path, width: int = 1400, height: int = 3000, timeout: float = 60.0
) -> None:
    _run(page, [f"--screenshot={png.resolve()}", f"--window-size={width},{height}"], timeout)
