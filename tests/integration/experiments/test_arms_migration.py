"""A prediction log made before arms had names gains the `framework` column, in SQLite and
PostgreSQL, idempotently, and its old rows still read (issue 22)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.control.database import Database, open_postgres, open_sqlite
from gateway.experiments.log.records import PredictionRecord, row_of
from gateway.experiments.log.store import RECORD_COLUMNS, SqlLogStore

OLD_TABLE = """CREATE TABLE predictions (
    request_id TEXT NOT NULL, kind TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
    experiment TEXT, model TEXT NOT NULL, arm TEXT NOT NULL, version INTEGER,
    key_hash TEXT, latency_ms DOUBLE PRECISION NOT NULL, status INTEGER NOT NULL,
    top1 INTEGER, prob DOUBLE PRECISION, agreed INTEGER, failover INTEGER NOT NULL,
    PRIMARY KEY (request_id, kind))"""
OLD_ROW = (
    "INSERT INTO predictions VALUES"
    " ('old', 'serve', 1.0, 'e', 'm', 'tensorflow', 1, NULL, 2.0, 200, 3, NULL, NULL, 0)"
)


def _columns(db: Database) -> list[str]:
    if db.postgres:
        sql = "SELECT column_name FROM information_schema.columns WHERE table_name = 'predictions'"
        return [r[0] for r in db.fetch(sql)]
    return [r[1] for r in db.fetch("PRAGMA table_info(predictions)")]


def _migrate_twice(opener: Callable[[], Database]) -> None:
    db = opener()
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE IF EXISTS predictions")
        cursor.execute(OLD_TABLE)
        cursor.execute(OLD_ROW)
    assert "framework" not in _columns(db)
    SqlLogStore(db)  # the migration
    SqlLogStore(opener())  # again, from another connection: no error, no second column
    assert _columns(db).count("framework") == 1
    store = SqlLogStore(db)
    new = PredictionRecord("new", "serve", 2.0, "e", "m", "tf-v2", 2, "u", 0.002, 200)
    new.framework = "tensorflow"
    store.write_batch([row_of(new)])
    rows = {r[0]: r for r in store.records("e")}
    index = RECORD_COLUMNS.index("framework")
    assert (rows["old"][5], rows["old"][index]) == ("tensorflow", None)
    assert (rows["new"][5], rows["new"][index]) == ("tf-v2", "tensorflow")


def test_sqlite_log_gains_the_framework_column(tmp_path: Path) -> None:
    _migrate_twice(lambda: open_sqlite(tmp_path / "predictions.sqlite3"))


@pytest.mark.timeout(120)
def test_postgres_log_gains_the_framework_column(postgres_url: str) -> None:
    _migrate_twice(lambda: open_postgres(postgres_url))
