"""The experiment report: decision first, every section filled from the analysis."""

from __future__ import annotations

from pathlib import Path

from gateway.experiments.log.records import Event
from gateway.experiments.report import _arm_label, rollout_lines, write_report
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows, row


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
    md_path, html_path = write_report(rows, events, "exp", tmp_path)
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
    md_path, _ = write_report(rows, [], "exp", tmp_path)
    md = md_path.read_text()
    assert "No decision: the experiment needs two arms" in md and "fewer than two arms" in md


def test_an_arm_that_names_its_server_is_labelled_with_it() -> None:
    specs = {
        "torch-pt2": {"framework": "pytorch", "version": None, "server": "oip"},
        "tf-v2": {"framework": "tensorflow", "version": 2, "server": None},
    }
    result = {"arm_specs": specs}
    assert _arm_label(result, "torch-pt2") == "torch-pt2 (pytorch on oip latest)"
    assert _arm_label(result, "tf-v2") == "tf-v2 (tensorflow v2)"  # as before issue 29
