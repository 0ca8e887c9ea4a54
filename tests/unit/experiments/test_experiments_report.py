"""The experiment report: decision first, every section filled from the analysis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.control.database import open_sqlite
from gateway.experiments.log.records import Event, Row
from gateway.experiments.log.store import SqlLogStore
from gateway.experiments.report import _arm_label, rollout_lines, write_report
from gateway.experiments.stats.analysis import analyse
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows, row
from tests.unit.stats.test_experiments_aggregates import assert_same, fill


def _store(rows: Sequence[Row]) -> SqlLogStore:
    """A log in memory holding `rows` (`RECORD_COLUMNS`: the label last, fed back)."""
    store = SqlLogStore(open_sqlite(None))
    store.write_batch([r[:-1] for r in rows])
    store.add_feedback([(r[0], r[-1]) for r in rows if r[1] == "serve" and r[-1] is not None], 1.0)
    return store


def _full_analysis(md: str) -> dict[str, Any]:
    """The JSON of the report's `## Full analysis` section."""
    block = md.split("## Full analysis", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return dict(json.loads(block))


class _RowsForbidden(SqlLogStore):
    def records(self, experiment: str | None, since: float | None = None) -> list[Row]:
        raise AssertionError("the report must not load the log's rows")


def test_rollout_lines_show_the_current_step_and_each_transition_with_its_figures() -> None:
    begin = {"kind": "advance", "step": 0, "share": 10.0, "metric": "start"}
    evidence = {"units": {CONTROL: 70, CANDIDATE: 9}, "srm": {"p_value": 0.42}}
    back = {"kind": "rollback", "step": -1, "share": 0.0, "metric": "srm", "evidence": evidence}
    events = [
        Event("exp", "rollout", "begins", begin, 650.0),
        Event("exp", "rollout", "srm", back, 700.0),
    ]
    lines = rollout_lines({"rollout": [e.as_dict() for e in events]})
    assert lines[0] == "Now: step -1, candidate share 0.0% (last transition: rollback)."
    assert lines[-2] == (
        "- 1970-01-01 00:10:50 UTC, advance: begins (step 0, candidate 10.0%, decided by start)"
    )
    units = '{"pytorch": 9, "tensorflow": 70}'
    assert lines[-1] == (
        "- 1970-01-01 00:11:40 UTC, rollback: srm"
        f" (step -1, candidate 0.0%, decided by srm, units {units}, SRM p 0.42)"
    )
    assert rollout_lines({"rollout": []}) == ["This experiment has no rollout."]


def test_report_sections_in_reading_order_with_pairs_and_rollout(tmp_path: Path) -> None:
    rows = experiment_rows(15, 400, {CONTROL: 0.95, CANDIDATE: 0.6})
    rows += [row(f"r{u}-0", CANDIDATE if r[5] == CONTROL else CONTROL, r[7], r[2] + 0.05, 12.0,
                 kind="shadow", agreed=1)
             for u, r in enumerate(rows[::2])]  # fmt: skip
    step = {"kind": "advance", "step": 1, "share": 5.0, "split": {CONTROL: 95.0, CANDIDATE: 5.0}}
    events = [define(rollout={}), Event("exp", "rollout", "non-inferior", step, 500.0)]
    md_path, html_path = write_report(_store(rows), "exp", tmp_path, events)
    md = md_path.read_text()
    order = ["## Decision", "## Sample-ratio check", "## Differences", "## Arms",
             "## Paired shadow analysis", "## Rollout"]  # fmt: skip
    assert [md.index(title) for title in order] == sorted(md.index(title) for title in order)
    assert "**candidate_inferior** (decided by: accuracy)" in md
    assert "McNemar exact p" in md and "pairs: 400" in md
    assert "Now: step 1, candidate share 5.0% (last transition: advance)." in md
    assert "- 1970-01-01 00:08:20 UTC, advance: non-inferior (step 1, candidate 5.0%" in md
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_report_of_a_one_arm_log_says_why_there_is_no_decision(tmp_path: Path) -> None:
    rows = [row(f"r{i}", CONTROL, f"u{i}", float(i), 10.0) for i in range(20)]
    md_path, _ = write_report(_store(rows), "exp", tmp_path, [])
    md = md_path.read_text()
    assert "No decision: the experiment needs two arms" in md and "fewer than two arms" in md


@pytest.mark.parametrize(("seed", "units"), [(0, 300), (3, 200)])
def test_the_reports_analysis_is_the_row_paths(tmp_path: Path, seed: int, units: int) -> None:
    store = _RowsForbidden(open_sqlite(None))
    events = fill(store, seed, units)
    md_path, html_path = write_report(store, "exp", tmp_path)
    rows = SqlLogStore.records(store, "exp")  # the oracle reads the rows; the report did not
    assert_same(_full_analysis(md_path.read_text()), analyse(rows, events, "exp"))
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_a_report_of_an_experiment_without_rows(tmp_path: Path) -> None:
    md_path, html_path = write_report(SqlLogStore(open_sqlite(None)), "exp", tmp_path, [])
    md = md_path.read_text()
    assert "No decision: the experiment needs two arms" in md
    assert _full_analysis(md)["arms"] == {}
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_a_report_where_every_latency_is_equal(tmp_path: Path) -> None:
    rows = [row(f"r{i}", (CONTROL, CANDIDATE)[i % 2], f"u{i}", float(i), 10.0, label=0)
            for i in range(40)]  # fmt: skip
    md_path, html_path = write_report(_store(rows), "exp", tmp_path, [define()])
    result = _full_analysis(md_path.read_text())
    assert result["arms"][CONTROL]["latency_ms"]["p50"]["value"] == 10.0
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_an_arm_that_names_its_server_is_labelled_with_it() -> None:
    specs = {
        "torch-pt2": {"framework": "pytorch", "version": None, "server": "oip"},
        "tf-v2": {"framework": "tensorflow", "version": 2, "server": None},
    }
    result = {"arm_specs": specs}
    assert _arm_label(result, "torch-pt2") == "torch-pt2 (pytorch on oip latest)"
    assert _arm_label(result, "tf-v2") == "tf-v2 (tensorflow v2)"  # as before issue 29
