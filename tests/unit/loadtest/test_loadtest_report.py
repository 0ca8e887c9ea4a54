"""Summaries of repeats, the headline table and sentences, and the rendered report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.cells import CellResult
from loadtest.report import build as report
from loadtest.report.tables import fixed_concurrency, headline, headline_cells, overheads
from loadtest.results import read_cells_csv, summarise, write_cells_csv
from tests.unit.loadtest.loadtest_fakes import BASE


def _cells() -> list[CellResult]:
    out = []
    for conc, scale in ((1, 1.0), (16, 4.0)):
        for repeat, jitter in ((1, 1.0), (2, 1.02)):
            tf = replace(
                BASE,
                concurrency=conc,
                repeat=repeat,
                throughput=200 * scale * jitter,
                p50_ms=1.0 * scale,
            )
            torch = replace(
                tf,
                target="torch-direct",
                framework="pytorch",
                throughput=150 * scale * jitter,
                p50_ms=0.8 * scale,
            )
            gw = replace(
                tf,
                target="gateway->tf",
                route="gateway",
                throughput=120 * scale,
                p50_ms=1.5 * scale,
                errors=10,
            )
            out += [tf, torch, gw]
    return out


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    cells = _cells()
    write_cells_csv(tmp_path / "cells.csv", cells)
    assert read_cells_csv(tmp_path / "cells.csv") == cells


def test_summary_takes_the_median_and_keeps_the_spread() -> None:
    summary = summarise(_cells())
    tf16 = next(s for s in summary if s.target == "tf-direct" and s.concurrency == 16)
    assert tf16.repeats == 2 and tf16.throughput == pytest.approx(808.0)
    assert (tf16.throughput_min, tf16.throughput_max) == (800.0, 816.0)
    gw = next(s for s in summary if s.target == "gateway->tf" and s.concurrency == 1)
    assert gw.error_rate == pytest.approx(20 / 2020)


def test_headline_marks_winners_per_pair() -> None:
    summary = summarise(_cells())
    rows = headline(summary, fixed_concurrency(summary))
    direct = {r.framework: r for r in rows if r.route == "direct"}
    assert direct["tensorflow"].throughput_winner and not direct["pytorch"].throughput_winner
    assert direct["pytorch"].latency_winner and direct["tensorflow"].best_load == "c=16"
    assert direct["tensorflow"].p50_ms == 4.0  # at the fixed concurrency (16)
    assert direct["tensorflow"].throughput_confidence.startswith("high (p=")
    gateway = [r for r in rows if r.route == "gateway"]
    assert len(gateway) == 1 and not gateway[0].throughput_winner  # no pair, no winner
    assert "★" in headline_cells(direct["tensorflow"])[4]


def test_fixed_concurrency_choice() -> None:
    summary = summarise(_cells())
    assert fixed_concurrency(summary) == 16
    assert fixed_concurrency(summary, 1) == 1
    assert fixed_concurrency(summary, 7) == 16


def test_overhead_against_direct() -> None:
    rows = overheads(summarise(_cells()))
    at1 = next(o for o in rows if o.load == "c=1")
    assert (at1.proxy, at1.framework) == ("gateway", "tensorflow")
    assert at1.added_p50_ms == pytest.approx(0.5) and at1.throughput_ratio == pytest.approx(
        120 / 202
    )


def test_report_files_show_the_csv_numbers(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_cells_csv(raw / "cells.csv", _cells())
    quality = [
        {
            "model": "digits-mlp",
            "version": 1,
            "accuracy": {"tensorflow": 0.958, "pytorch": 0.96},
            "agreement": 0.997,
        }
    ]
    (raw / "meta.json").write_text(json.dumps({"quality": quality, "environment": {"cpu": "x"}}))
    built = report.build(tmp_path)
    page = (tmp_path / "index.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert page.count('src="data:image/png;base64,') == 11 and "http" not in page.split("<body>")[0]
    for row in built.headline:
        assert " | ".join(headline_cells(row)) in md
    assert "99.7%" in md and "95.8%" in page
    assert json.loads((tmp_path / "summary.json").read_text())["fixed_concurrency"] == 16
