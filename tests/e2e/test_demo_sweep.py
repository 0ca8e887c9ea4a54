"""The demo path end to end, in small: `python -m loadtest` brings the real stack up
(both backends, the gateway, nginx), measures, writes the report, stops everything.

Two real runs. The first sweeps closed loop (c=1) and an open-loop Poisson rate far above
what this stack serves (3000 requests/s), with a p99 objective: its report must show the
dropped requests and the saturation point, and the closed-loop cells' corrected and
measured p99 side by side, all equal to the runner's CSV. The second run is a plain
closed-loop sweep with `--repeats 2`; `python -m loadtest compare` of the two must show
both CSVs' numbers. Both pages must render in headless Chromium with every plot (latency
over time and the percentile spectrum included) and the fairness, spread and breakdown
blocks, with nothing from the network; one run names no winner; the headline printed at
80 and 100 columns names every target whole; and no process may be left.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from loadtest.report.browser import chromium, dump_dom

TARGETS = "tf-direct,torch-direct,gateway->torch,nginx-50/50"
RATE = 12000.0  # requests/s: above what any target here serves (TF direct: ~5,000/s)
SLO_MS = 50.0
PLOTS = (
    "throughput",
    "p50",
    "p99",
    "latency-vs-throughput",
    "gateway-overhead",
    "errors",
    "open-loop",
    "goodput",
    "latency-over-time",
    "percentile-spectrum",
    "time-breakdown",
)
BLOCKS = ("fairness", "spread", "breakdown")
ONE_RUN = "no difference shown (1 run; run with --repeats 3)"
COMPARE_PLOTS = ("compare-throughput", "compare-p99", "compare-open-loop", "compare-open-p99")
TIMING = ("--duration", "1.5", "--cap", "2", "--warmup", "0.5")


def _sweep(store: Path, base: Path, name: str, *extra: str) -> tuple[Path, str]:
    argv = [
        sys.executable, "-m", "loadtest", "--model-store", str(store),
        "--run-dir", str(base / f"run-{name}"), "--output", str(base / name), *TIMING, *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "report:" in done.stdout
    return base / name, done.stdout


@pytest.fixture(scope="module")
def runs(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("sweep")
    first, stdout = _sweep(
        trained_store, base, "first", "--targets", TARGETS, "--concurrency", "1",
        "--arrival", "poisson", "--rate", f"{RATE:g}", "--slo-p99-ms", f"{SLO_MS:g}",
    )  # fmt: skip
    second, _ = _sweep(
        trained_store, base, "second", "--targets", "tf-direct,torch-direct",
        "--protocols", "rest", "--concurrency", "1", "--repeats", "2",
    )  # fmt: skip
    return {"first": first, "second": second, "stdout": stdout, "base": base}


def _csv_rows(report_dir: Path) -> list[dict[str, str]]:
    with (report_dir / "raw" / "cells.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _md_table(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines[1:]]


def _ms(value: str) -> str:
    return f"{float(value):.2f}"


def test_every_cell_measured(runs: dict[str, Any]) -> None:
    rows = _csv_rows(runs["first"])
    seen = {(r["target"], r["protocol"], r["arrival"]) for r in rows}
    assert ("nginx-50/50", "rest", "poisson") in seen and ("tf-direct", "grpc", "closed") in seen
    assert len(rows) == 2 * 7  # 4 targets over REST, 3 over gRPC; closed and open loop
    for row in rows:
        assert int(row["requests"]) > 0, row
        assert float(row["p50_ms"]) <= float(row["p99_ms"]) <= float(row["max_ms"])
        if row["arrival"] == "closed":
            assert int(row["errors"]) == 0 and int(row["dropped"]) == 0, row
            # Locust's own count (warm-up included, its last CSV write may lag) agrees roughly
            assert 0.5 < int(row["requests"]) / int(row["locust_requests"]) < 2


def test_poisson_above_capacity_reports_drops_and_saturation(runs: dict[str, Any]) -> None:
    rows = [r for r in _csv_rows(runs["first"]) if r["arrival"] == "poisson"]
    md = (runs["first"] / "report.md").read_text()
    headline = {(c[1], c[2]): c for c in _md_table(md, "## Headline")}
    for row in rows:
        assert float(row["offered_rate"]) == RATE
        assert int(row["dropped"]) > 0, row  # the client could not keep up: counted
        assert float(row["throughput"]) < 0.9 * RATE
        cells = headline[(row["protocol"], row["target"])]
        assert cells[10] == f"{RATE:g}/s (served {float(row['throughput']):.0f}/s)"
        assert cells[12] == row["dropped"]  # one open-loop cell per target


def test_closed_loop_shows_corrected_and_measured_p99(runs: dict[str, Any]) -> None:
    rows = [r for r in _csv_rows(runs["first"]) if r["arrival"] == "closed"]
    md = (runs["first"] / "report.md").read_text()
    assert "| p99 ms @c=1 | p99 ms @c=1 corrected |" in md
    headline = {(c[1], c[2]): c for c in _md_table(md, "## Headline")}
    for row in rows:
        cells = headline[(row["protocol"], row["target"])]
        assert cells[5] == "c=1"  # the best load of the closed-loop cells
        assert cells[7] == _ms(row["p99_ms"]) and cells[8] == _ms(row["p99_corrected_ms"])
        assert float(row["p99_corrected_ms"]) > 0


def test_report_shows_the_csv_numbers(runs: dict[str, Any]) -> None:
    rows = _csv_rows(runs["first"])
    summary = json.loads((runs["first"] / "summary.json").read_text())
    by_key = {(s["target"], s["protocol"], s["arrival"]): s for s in summary["summaries"]}
    for row in rows:
        s = by_key[(row["target"], row["protocol"], row["arrival"])]
        assert s["throughput"] == float(row["throughput"]) and s["p99_ms"] == float(row["p99_ms"])
        assert s["goodput"] == float(row["goodput"]) and s["dropped"] == int(row["dropped"])
    assert summary["slo_p99_ms"] == SLO_MS


def test_answer_sentence_in_report_and_terminal(runs: dict[str, Any]) -> None:
    md = (runs["first"] / "report.md").read_text()
    section = md.split("## Answer", 1)[1].split("\n## ", 1)[0]
    answers = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(answers) == 2  # REST and gRPC
    for line in answers:  # one repeat: no winner, however the figures fell
        assert f"(called directly): {ONE_RUN} between TensorFlow and PyTorch: " in line, line
        assert re.search(r"PyTorch: \d+ vs \d+ req/s at best", line), line
        assert "served it better" not in line
        assert "test accuracy" in line and "TF server: the " in line
        assert line[2:] in " ".join(runs["stdout"].split())  # printed, maybe wrapped


def test_report_has_quality_and_environment(runs: dict[str, Any]) -> None:
    md = (runs["first"] / "report.md").read_text()
    assert re.search(r"\| digits-mlp \| 1 \| 9\d\.\d% \| 9\d\.\d% \| 9\d\.\d% \|", md)
    meta = json.loads((runs["first"] / "raw" / "meta.json").read_text())
    assert meta["environment"]["packages"]["locust"] != "not installed"
    assert "tfserving/tfserving.json" in meta["backend_settings"]


def test_compare_of_two_real_runs_shows_both_csvs(runs: dict[str, Any]) -> None:
    out = runs["base"] / "compare"
    argv = [sys.executable, "-m", "loadtest", "compare", str(runs["first"]), str(runs["second"])]
    done = subprocess.run(
        [*argv, "--output", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    a = {(r["target"], r["protocol"], r["arrival"]): r for r in _csv_rows(runs["first"])}
    b = _medians(_csv_rows(runs["second"]))  # two repeats: the table shows their median
    text = (out / "compare.md").read_text()
    table = [
        [cell.strip() for cell in line.strip("| ").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| digits-mlp |")
    ]
    assert {(c[1], c[2]) for c in table} == {("tf-direct", "rest"), ("torch-direct", "rest")}
    for cells in table:
        ra, rb = a[(cells[1], cells[2], "closed")], b[(cells[1], cells[2], "closed")]
        assert cells[4:6] == [f"{float(ra['throughput']):.0f}", f"{float(rb['throughput']):.0f}"]
        assert cells[6:8] == [_ms(ra["p50_ms"]), _ms(rb["p50_ms"])]
        assert cells[8:10] == [_ms(ra["p99_ms"]), _ms(rb["p99_ms"])]
        assert cells[12].startswith("B vs A: mean req/s")
        assert "no difference shown, 1 run; run with --repeats 3" in cells[12]


def _medians(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], dict[str, str]]:
    """Per cell, the median over its repeats of throughput, p50 and p99 (as CSV text)."""
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["protocol"], r["arrival"]), []).append(r)
    return {
        key: {f: str(statistics.median(float(r[f]) for r in group)) for f in FIGURES}
        for key, group in groups.items()
    }


FIGURES = ("throughput", "p50_ms", "p99_ms")


def _plots_render(page: Path, plots: tuple[str, ...]) -> str:
    assert chromium() is not None, "chromium is not installed: run scripts/setup.sh"
    dom = dump_dom(page)
    for plot in plots:
        match = re.search(rf'<img[^>]*id="plot-{plot}"[^>]*>', dom)
        assert match, f"plot {plot} missing from the rendered page"
        uri = re.search(r'src="(data:image/png;base64,[^"]+)"', match.group(0))
        assert uri and len(uri.group(1)) > 2000
    assert not re.search(r'(src|href)="https?://', dom)  # nothing from the network
    return dom


def test_html_renders_in_headless_chromium(runs: dict[str, Any]) -> None:
    dom = _plots_render(runs["first"] / "index.html", PLOTS)
    assert 'id="headline"' in dom and 'id="answer"' in dom and "nginx" in dom
    for name in ("first", "second"):
        dom = _plots_render(runs[name] / "index.html", PLOTS)
        for block in BLOCKS:
            assert f'<section id="{block}">' in dom, (name, block)
        assert not re.search(r"<(link|script)[^>]*(src|href)=", dom)  # nothing fetched
    compare = runs["base"] / "compare" / "index.html"
    if not compare.is_file():  # this test may run alone
        test_compare_of_two_real_runs_shows_both_csvs(runs)
    assert 'id="comparison"' in _plots_render(compare, COMPARE_PLOTS)


def test_repeats_give_spread_and_the_time_breakdown(runs: dict[str, Any]) -> None:
    rows = _csv_rows(runs["second"])
    assert sorted(int(r["repeat"]) for r in rows) == [1, 1, 2, 2]
    md = (runs["second"] / "report.md").read_text()
    spread = {c[1]: c for c in _md_table(md, "## Spread across repeats")}
    for target in ("tf-direct", "torch-direct"):
        tputs = [float(r["throughput"]) for r in rows if r["target"] == target]
        assert spread[target][4] == "2"
        assert spread[target][5].startswith(f"{sum(tputs) / 2:.0f} [") and "CV" in spread[target][5]
    first = (runs["first"] / "report.md").read_text()
    parts = {(c[1], c[2]): c for c in _md_table(first, "## Where the time went")}
    for target in ("tf-direct", "torch-direct"):  # the backend's own queue and compute time
        own = parts[("rest", target)]
        assert float(own[4]) > 0 and float(own[6]) > 0 and float(own[6]) <= float(own[4]), own
        assert float(own[5]) >= 0, own
    via = parts[("rest", "gateway->torch")]  # the gateway's Server-Timing share
    assert 0 < float(via[8]) < float(via[4])


@pytest.mark.parametrize("width", [80, 100])
def test_headline_in_a_narrow_terminal_names_every_target(runs: dict[str, Any], width: int) -> None:
    argv = [sys.executable, "-m", "loadtest", "report", str(runs["first"])]
    env = {**os.environ, "COLUMNS": str(width)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "…" not in done.stdout
    for row in _csv_rows(runs["first"]):
        assert re.search(rf"│ ?{re.escape(row['target'])} +│", done.stdout), row["target"]
    for line in done.stdout.splitlines():
        if "│" in line:
            assert len(line) <= width, line


def test_no_process_left_behind(runs: dict[str, Any]) -> None:
    pids: list[int] = []
    for name in ("first", "second"):
        meta: dict[str, Any] = json.loads((runs[name] / "raw" / "meta.json").read_text())
        pids += [int(p) for p in meta["pids"].values()]
        for record in (runs[name] / "raw" / "cells").glob("*/process-*.json"):
            pids.append(int(json.loads(record.read_text())["pid"]))
    first = json.loads((runs["first"] / "raw" / "meta.json").read_text())
    assert {"tensorflow", "pytorch", "gateway", "nginx"} <= set(first["pids"])
    alive = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"still running: {alive}"
