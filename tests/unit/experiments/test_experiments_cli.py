"""`dualserve experiment status` and `report` read the log offline (a real SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dualserve.cli import app
from gateway.control.database import open_database
from gateway.experiments.log.records import Event
from gateway.experiments.log.store import SqlLogStore, open_store
from gateway.experiments.state_store import add_event
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows


def _log(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'predictions.sqlite3'}"
    rows = experiment_rows(13, 600, {CONTROL: 0.95, CANDIDATE: 0.6})
    store = open_store(url, None)
    try:
        store.write_batch([r[:-1] for r in rows])  # the log has no label column
        store.add_feedback([(r[0], r[-1]) for r in rows], 1.0)
    finally:
        store.close()
    db = open_database(url, None)  # events are the experiments' state store's to write
    step = {"kind": "rollback", "step": -1, "share": 0.0, "reason": "guardrail accuracy"}
    try:
        with db.transaction() as cursor:
            add_event(db, cursor, define(rollout={"steps": [10, 100]}))
            add_event(db, cursor, Event("exp", "rollout", "guardrail accuracy", step, 700.0))
    finally:
        db.conn.close()
    return url


def test_status_shows_the_decision_srm_and_rollout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["experiment", "status", "exp", "--db", _log(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "candidate_inferior" in text and "decided by: accuracy" in text
    assert text.index("Decision") < text.index("Sample-ratio check") < text.index("Rollout")
    assert "guardrail accuracy" in text


def test_status_json_is_the_analysis(tmp_path: Path) -> None:
    args = ["experiment", "status", "exp", "--db", _log(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    analysis = json.loads(result.output)
    assert analysis["decision"]["outcome"] == "candidate_inferior"
    assert analysis["rollout"][0]["details"]["share"] == 0.0


def test_unknown_experiment_exits_1_with_a_sentence(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["experiment", "status", "nope", "--db", _log(tmp_path)])
    assert result.exit_code == 1 and "no experiment 'nope'" in result.output


def test_report_writes_both_files_without_loading_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _log(tmp_path)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the report must not load the log's rows")

    monkeypatch.setattr(SqlLogStore, "records", forbidden)
    args = ["experiment", "report", "exp", "--db", url, "--out", str(tmp_path / "reports")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "reports" / "exp"
    assert result.output.startswith("1200 log records -> ")  # 600 units, 2 requests each
    assert "candidate_inferior" in (folder / "report.md").read_text()
    assert (folder / "index.html").read_text().count("data:image/png;base64,") == 4


def test_report_of_an_unknown_experiment_exits_1_with_a_sentence(tmp_path: Path) -> None:
    args = ["experiment", "report", "nope", "--db", _log(tmp_path), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no experiment 'nope'" in result.output
    assert not (tmp_path / "nope").exists()
