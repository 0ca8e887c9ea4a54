"""Experiments' state in the experiments database: one row each, and their events.

Every function runs on the control plane's thread (`gateway.control.plane`), the writes inside
its transaction (which also bumps the change counter). Transitions are conditional
updates (`... WHERE status IN (allowed)`), so when several gateway processes race for
one (two auto-starts, a stop rule seen by each), exactly one succeeds and records the
event; a partial unique index keeps a model to one running experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from gateway.control.database import Database
from gateway.experiments.log.records import Event
from gateway.settings import ExperimentSpec

Status = Literal["scheduled", "running", "paused", "ended"]
STATUS_AFTER: dict[str, Status] = {"start": "running", "pause": "paused", "end": "ended"}
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS experiments (
        id TEXT PRIMARY KEY, model TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_running_experiment_per_model
        ON experiments (model) WHERE status = 'running'""",
    """CREATE TABLE IF NOT EXISTS experiment_events (
        experiment TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, action TEXT NOT NULL,
        reason TEXT NOT NULL, details TEXT NOT NULL)""",
)


@dataclass(frozen=True, slots=True)
class StoredExperiment:
    spec: ExperimentSpec
    status: Status


def load(db: Database) -> dict[str, StoredExperiment]:
    """Every experiment in the database, by id."""
    rows = db.fetch("SELECT id, spec, status FROM experiments")
    return {
        exp_id: StoredExperiment(ExperimentSpec.model_validate_json(spec), status)
        for exp_id, spec, status in rows
    }


def define(db: Database, cursor: Any, spec: ExperimentSpec, event: Event) -> bool:
    """Insert a configured experiment unless some process already did (then False, and no
    second `define` event). A database written before experiments had their own table
    holds only events: the state is replayed from them, and no `define` is added.

    Workers define together at start. `ON CONFLICT DO NOTHING` with no target: when two
    insert a running experiment at once, PostgreSQL may meet the other's row first in
    `one_running_experiment_per_model`, not the primary key, and a conflict target of
    `id` alone made that an error that failed the worker's start.

    Raises:
        db.integrity_error: nothing inserted and no experiment with this id: another
            experiment runs on the model.
    """
    prior = _prior_events(db, cursor, spec.id)
    spec, status = _replay(spec, prior)
    cursor.execute(
        f"INSERT INTO experiments (id, model, spec, status, updated_at) VALUES ({db.marks(5)})"
        " ON CONFLICT DO NOTHING",
        (spec.id, spec.model, spec.model_dump_json(), status, event.ts),
    )
    inserted = cursor.rowcount == 1
    if not inserted:  # read committed: this statement sees the other's committed row
        cursor.execute(f"SELECT 1 FROM experiments WHERE id = {db.placeholder}", (spec.id,))
        if cursor.fetchone() is None:
            raise db.integrity_error(
                f"experiment {spec.id}: another experiment is running on model {spec.model}"
            )
    if inserted and not prior:
        add_event(db, cursor, event)
    return inserted


def create(db: Database, cursor: Any, spec: ExperimentSpec, event: Event) -> None:
    """Insert an experiment created at run time, with its `define` event.

    Raises:
        db.integrity_error: an experiment with this id exists.
    """
    cursor.execute(
        f"INSERT INTO experiments (id, model, spec, status, updated_at) VALUES ({db.marks(5)})",
        (spec.id, spec.model, spec.model_dump_json(), "scheduled", event.ts),
    )
    add_event(db, cursor, event)


def _prior_events(db: Database, cursor: Any, experiment: str) -> list[tuple[str, str]]:
    sql = "SELECT action, details FROM experiment_events WHERE experiment = {} ORDER BY ts"
    cursor.execute(sql.format(db.placeholder), (experiment,))
    return [(action, details) for action, details in cursor.fetchall()]


def _replay(spec: ExperimentSpec, events: list[tuple[str, str]]) -> tuple[ExperimentSpec, Status]:
    status: Status = "scheduled"
    for action, details in events:
        if action in STATUS_AFTER:
            status = STATUS_AFTER[action]
        elif action in ("split", "rollout"):
            spec = spec.model_copy(update={"split": json.loads(details)["split"]})
    return spec, status


def transition(db: Database, cursor: Any, event: Event, allowed: tuple[str, ...]) -> bool:
    """Apply `event.action` if the experiment's status is one of `allowed`; False if not
    (another process got there first).

    Raises:
        db.integrity_error: starting it would make two experiments run on one model.
    """
    p = db.placeholder
    cursor.execute(
        f"UPDATE experiments SET status = {p}, updated_at = {p}"
        f" WHERE id = {p} AND status IN ({db.marks(len(allowed))})",
        (STATUS_AFTER[event.action], event.ts, event.experiment, *allowed),
    )
    return _recorded(db, cursor, event)


def change_split(db: Database, cursor: Any, event: Event, spec: ExperimentSpec) -> bool:
    """Store the new spec (its split) unless the experiment has ended meanwhile."""
    p = db.placeholder
    cursor.execute(
        f"UPDATE experiments SET spec = {p}, updated_at = {p} WHERE id = {p} AND status <> 'ended'",
        (spec.model_dump_json(), event.ts, event.experiment),
    )
    return _recorded(db, cursor, event)


def rollout_step(db: Database, cursor: Any, event: Event, spec: ExperimentSpec) -> bool:
    """Store a rollout step's split (in `spec`) if the experiment still runs."""
    p = db.placeholder
    cursor.execute(
        f"UPDATE experiments SET spec = {p}, updated_at = {p}"
        f" WHERE id = {p} AND status = 'running'",
        (spec.model_dump_json(), event.ts, event.experiment),
    )
    return _recorded(db, cursor, event)


def _recorded(db: Database, cursor: Any, event: Event) -> bool:
    if cursor.rowcount != 1:
        return False
    add_event(db, cursor, event)
    return True


def add_event(db: Database, cursor: Any, event: Event) -> None:
    cursor.execute(f"INSERT INTO experiment_events VALUES ({db.marks(5)})", event.as_row())


def read_events(db: Database, experiment: str | None = None) -> list[Event]:
    """Transitions, oldest first; every experiment's when `experiment` is None."""
    sql = "SELECT experiment, ts, action, reason, details FROM experiment_events"
    params: tuple[Any, ...] = ()
    if experiment is not None:
        sql, params = sql + f" WHERE experiment = {db.placeholder}", (experiment,)
    return [Event.from_row(row) for row in db.fetch(sql + " ORDER BY ts", params)]
