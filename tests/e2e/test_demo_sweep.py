"""The demo path end to end, in small: `python -m loadtest` brings the real stack up
(both backends, the gateway, nginx), measures, writes the report, stops everything.

Checks that the report shows exactly the numbers parsed from the runner's CSV, that the
HTML renders in headless Chromium with its plots, and that no process is left behind.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadtest.browser import chromium, dump_dom

TARGETS = "tf-direct,gateway->torch,nginx-50/50"
PLOTS = ("throughput", "p50", "p99", "latency-vs-throughput", "gateway-overhead", "errors")


@pytest.fixture(scope="module")
def report_dir(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sweep")
    argv = [
        sys.executable,
        "-m",
        "loadtest",
        "--model-store",
        str(trained_store),
        "--run-dir",
        str(base / "run"),
        "--output",
        str(base / "report"),
        "--targets",
        TARGETS,
        "--concurrency",
        "1",
        "--duration",
        "1.5",
        "--cap",
        "2",
        "--warmup",
        "0.5",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "report:" in done.stdout
    return base / "report"


def _csv_rows(report_dir: Path) -> list[dict[str, str]]:
    with (report_dir / "raw" / "cells.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _md_headline(report_dir: Path) -> list[list[str]]:
    text = (report_dir / "report.md").read_text()
    section = text.split("## Headline", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines[1:]]


def test_every_cell_measured_without_errors(report_dir: Path) -> None:
    rows = _csv_rows(report_dir)
    seen = {(r["target"], r["protocol"]) for r in rows}
    assert {("tf-direct", "rest"), ("gateway->torch", "rest"), ("nginx-50/50", "rest")} <= seen
    for row in rows:
        assert int(row["requests"]) > 0 and int(row["errors"]) == 0, row
        # Locust's own count (warm-up included, its last CSV write may lag) agrees roughly
        assert 0.5 < int(row["requests"]) / int(row["locust_requests"]) < 2
        assert float(row["p50_ms"]) <= float(row["p99_ms"]) <= float(row["max_ms"])


def test_report_shows_the_csv_numbers(report_dir: Path) -> None:
    rows = _csv_rows(report_dir)
    headline = _md_headline(report_dir)
    direct_and_pinned = [r for r in rows if r["framework"] != "mixed"]
    assert len(headline) == len(direct_and_pinned)
    by_key = {(r["protocol"], r["route"], r["framework"]): r for r in direct_and_pinned}
    for cells in headline:
        row = by_key[(cells[1], cells[2], cells[3])]
        assert cells[4].split()[0] == f"{float(row['throughput']):.0f}"
        assert cells[6].split()[0] == f"{float(row['p50_ms']):.2f}"
        assert cells[7] == f"{float(row['p99_ms']):.2f}"
    summary = json.loads((report_dir / "summary.json").read_text())
    tf = next(
        s for s in summary["summaries"] if (s["target"], s["protocol"]) == ("tf-direct", "rest")
    )
    csv_tf = next(r for r in rows if (r["target"], r["protocol"]) == ("tf-direct", "rest"))
    assert tf["throughput"] == float(csv_tf["throughput"]) and tf["p99_ms"] == float(
        csv_tf["p99_ms"]
    )


def test_report_has_quality_and_environment(report_dir: Path) -> None:
    md = (report_dir / "report.md").read_text()
    assert re.search(r"\| digits-mlp \| 1 \| 9\d\.\d% \| 9\d\.\d% \| 9\d\.\d% \|", md)
    meta = json.loads((report_dir / "raw" / "meta.json").read_text())
    assert meta["environment"]["packages"]["locust"] != "not installed"
    assert "tfserving/tfserving.json" in meta["backend_settings"]


def test_html_renders_in_headless_chromium(report_dir: Path) -> None:
    assert chromium() is not None, "chromium is not installed: run scripts/setup.sh"
    dom = dump_dom(report_dir / "index.html")
    for plot in PLOTS:
        match = re.search(rf'<img[^>]*id="plot-{plot}"[^>]*>', dom)
        assert match, f"plot {plot} missing from the rendered page"
        uri = re.search(r'src="(data:image/png;base64,[^"]+)"', match.group(0))
        assert uri and len(uri.group(1)) > 2000
    assert 'id="headline"' in dom and "nginx" in dom
    assert not re.search(r'(src|href)="https?://', dom)  # nothing from the network


def test_no_process_left_behind(report_dir: Path) -> None:
    meta: dict[str, Any] = json.loads((report_dir / "raw" / "meta.json").read_text())
    pids = [int(p) for p in meta["pids"].values()]
    for record in (report_dir / "raw" / "cells").glob("*/process-*.json"):
        pids.append(int(json.loads(record.read_text())["pid"]))
    assert {"tensorflow", "pytorch", "gateway", "nginx"} <= set(meta["pids"])
    alive = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"still running: {alive}"
