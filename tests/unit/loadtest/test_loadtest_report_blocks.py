"""Issue 27's report blocks on synthetic results: the terminal headline at 80 and 100
columns names every target in full; the spread, breakdown and fairness blocks and the new
plots are in the page, their numbers from the CSV and hand computation."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from gateway.telemetry.histogram import LatencyHistogram
from loadtest.cells import CellResult
from loadtest.report import build as report
from loadtest.report.breakdown import breakdown
from loadtest.report.fairness import saturation_warnings
from loadtest.results import summarise, write_cells_csv
from loadtest.runner import print_headline
from loadtest.targets import ALL_TARGETS
from tests.unit.loadtest.loadtest_fakes import BASE

FRAMEWORK = {"tf": "tensorflow", "torch": "pytorch"}


def _target(name: str, protocol: str, repeat: int, tput: float) -> CellResult:
    route = name.split("-")[0].split("->")[0] if not name.endswith("direct") else "direct"
    tail = name.split("->")[-1].split("-")[0]
    framework = FRAMEWORK.get(tail, "mixed")
    return replace(
        BASE, target=name, protocol=protocol, route=route, framework=framework,
        repeat=repeat, throughput=tput, arrival="poisson", offered_rate=12000.0,
        concurrency=64, dropped=12345,
    )  # fmt: skip


def _every_target() -> list[CellResult]:
    cells = []
    for repeat, jitter in ((1, 1.0), (2, 1.3)):  # a CV far above 10%
        for i, name in enumerate(ALL_TARGETS):
            cells.append(_target(name, "rest", repeat, (1000 + 37 * i) * jitter))
        for i, name in enumerate(t for t in ALL_TARGETS if not t.startswith("nginx")):
            cells.append(_target(name, "grpc", repeat, (900 + 41 * i) * jitter))
    return cells


def _write(tmp_path: Path, cells: list[CellResult], meta: dict[str, object]) -> Path:
    (tmp_path / "raw").mkdir()
    write_cells_csv(tmp_path / "raw" / "cells.csv", cells)
    (tmp_path / "raw" / "meta.json").write_text(json.dumps(meta))
    return tmp_path


@pytest.mark.parametrize("width", [80, 100])
def test_headline_names_every_target_in_full(tmp_path: Path, width: int) -> None:
    built = report.load(_write(tmp_path, _every_target(), {}))
    out = io.StringIO()
    print_headline(Console(file=out, width=width, color_system=None), built)
    text = out.getvalue()
    table_lines = [line for line in text.splitlines() if "│" in line or "┃" in line]
    assert table_lines and all(len(line) <= width for line in table_lines)
    assert "…" not in text
    for protocol in ("REST", "GRPC"):
        assert f"digits-mlp, {protocol}" in text
    for name in ALL_TARGETS:  # whole, between the table's borders
        assert re.search(rf"│ ?{re.escape(name)} +│", text), name
    assert len(re.findall(r"│ ?gateway->tf +│", text)) == 2  # REST and gRPC rows


def test_breakdown_by_hand() -> None:
    direct, via = summarise([BASE, replace(BASE, target="gateway->tf", route="gateway")])
    # BASE: client mean 1.1, backend 0.5 = queue 0.125 + compute 0.25 + other 0.125
    d = breakdown(direct)
    assert (d.queue_ms, d.compute_ms, d.server_other_ms) == (0.125, 0.25, 0.125)
    assert d.rest_ms == pytest.approx(1.1 - 0.5) and math.isnan(d.gateway_ms)
    g = breakdown(via)  # Server-Timing: gateway 0.25, upstream 0.75
    assert g.gateway_ms == 0.25 and g.wire_ms == pytest.approx(0.75 - 0.5)
    assert g.rest_ms == pytest.approx(1.1 - 0.25 - 0.75)
    assert sum(g.parts().values()) == pytest.approx(g.client_ms)


def test_saturation_warnings() -> None:
    calm = summarise([BASE])
    assert saturation_warnings(calm) == []
    busy = summarise([replace(BASE, saturated=True, box_cpu=0.97)])
    [loadgen, box] = saturation_warnings(busy)
    assert "load generator was saturated" in loadgen and "1 of 1 cells" in loadgen
    assert "above 90% busy" in box


TF_SETTINGS = {
    "enable_batching": True,
    "max_execution_batch_size": 8,
    "batch_timeout_micros": 2000,
    "num_batch_threads": 1,
    "intra_op_threads": 1,
    "inter_op_threads": 1,
}
META = {
    "environment": {
        "gpu": "none",
        "tf_serving": "bundled",
        "packages": {"tensorflow": "2.16.1", "torch": "2.3.0", "torchserve": "0.12.0"},
        "git_commit": "abc123",
    },
    "backend_settings": {
        "tfserving/tfserving.json": json.dumps({"settings": TF_SETTINGS}),
        "torchserve/config.properties": "default_workers_per_model=1\nnumber_of_gpu=0\n"
        'models={"digits-mlp":{"1":{"batchSize":8,"maxBatchDelay":2}}}\n',
        "gateway/gateway.yaml": "workers: 2\n",
    },
    "processes": {
        "pytorch": {"threads": 40, "children": 1, "thread_env": {"OMP_NUM_THREADS": "1"}}
    },
    "locust": {"processes": 1, "cpu_pinning": "none"},
}


def _latency(tmp_path: Path, cell: CellResult) -> None:
    hist = LatencyHistogram()
    for i in range(1, 10001):
        hist.record(i / 1e6)  # 1 us .. 10 ms, uniform
    folder = tmp_path / "raw" / "cells" / f"{cell.target}-{cell.repeat}"
    folder.mkdir(parents=True)
    record = {
        "model": cell.model, "target": cell.target, "protocol": cell.protocol,
        "arrival": cell.arrival, "concurrency": cell.concurrency,
        "offered_rate": cell.offered_rate, "repeat": cell.repeat,
        "histogram": hist.to_json(),
        "timeline": {"columns": ["second", "count", "p50_ms", "p99_ms"],
                     "rows": [[0, 100, 1.0, 2.0], [1, 100, 1.1, 2.5], [2, 100, 1.0, 9.0]]},
    }  # fmt: skip
    (folder / "latency.json").write_text(json.dumps(record))


def test_page_has_the_new_blocks_and_plots(tmp_path: Path) -> None:
    torch = replace(BASE, target="torch-direct", framework="pytorch")
    cells = [replace(BASE, repeat=1), replace(BASE, repeat=2, throughput=260.0)]
    cells += [replace(torch, repeat=1), replace(torch, repeat=2)]
    _write(tmp_path, cells, META)
    for c in cells:
        _latency(tmp_path, c)
    built = report.build(tmp_path)
    page = (tmp_path / "index.html").read_text()
    md = (tmp_path / "report.md").read_text()
    for block in ("fairness", "spread", "breakdown"):
        assert f'<section id="{block}">' in page
    for plot in ("latency-over-time", "percentile-spectrum", "time-breakdown"):
        assert re.search(rf'<img[^>]*id="plot-{plot}"[^>]*src="data:image/png;base64,', page)
    # TF's throughput 200 and 260: mean 230, CV = 42.43 / 230 = 18.4%, flagged
    assert "230 [" in md and "CV 18.4% ⚠" in md and "⚠ CV above 10%" in page
    assert "| TF Serving | bundled; tensorflow 2.16.1 | 1 server process |" in md
    assert "up to 8 per batch, waits 2000 us, 1 batch thread(s)" in md
    assert "up to 8 per batch, waits 2 ms" in md and "OMP_NUM_THREADS=1" in md
    assert "2 worker process(es)" in md
    assert [b.target for b in built.breakdowns] == ["tf-direct", "torch-direct"]
