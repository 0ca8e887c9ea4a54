"""Gateway workers define the configured experiments together at start (issue 23's real
stack, 2 workers on PostgreSQL, found a worker failing its start): an experiment whose
events say it runs is inserted by one of them; the other finds it there, whichever of the
table's unique indexes its insert met first. Each try runs the two defines at once on
a fresh database of the throwaway cluster (`postgres_url`; it never skips).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import psycopg

from gateway.control.database import CONTROL_TIMEOUTS, open_postgres
from gateway.experiments import state_store
from gateway.experiments.log.records import Event
from gateway.settings import ExperimentSpec

_NAMES = itertools.count()
TRIES = 30


def _fresh(postgres_url: str) -> str:
    name = f"define_race_{next(_NAMES)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def _define_at_once(dbs: list[Any], spec: ExperimentSpec, define: Event) -> list[Any]:
    """Both databases' `define` in two threads released together: their results (or the
    exception that failed a worker's start)."""
    together = threading.Barrier(len(dbs))
    results: list[Any] = [None] * len(dbs)

    def worker(i: int) -> None:
        db = dbs[i]
        together.wait()
        try:
            with db.transaction() as cursor:
                results[i] = state_store.define(db, cursor, spec, define)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(dbs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results, key=repr)


def test_two_workers_defining_a_running_experiment_at_once_both_start(postgres_url: str) -> None:
    spec = ExperimentSpec(id="ab", model="m", split={"tensorflow": 50.0, "pytorch": 50.0})
    define = Event("ab", "define", "configured", spec.model_dump(mode="json"), 1.0)
    outcomes: list[Any] = []
    for _ in range(TRIES):
        url = _fresh(postgres_url)
        dbs = [open_postgres(url, CONTROL_TIMEOUTS) for _ in range(2)]
        dbs[0].create_schema(state_store.SCHEMA)
        with dbs[0].transaction() as cursor:  # its events: defined, then started
            state_store.add_event(dbs[0], cursor, define)
            state_store.add_event(dbs[0], cursor, Event("ab", "start", "admin", {}, 2.0))
        outcomes.append(_define_at_once(dbs, spec, define))
        assert state_store.load(dbs[0])["ab"].status == "running"
        for db in dbs:
            db.close()
    failed = [outcome for outcome in outcomes if outcome != [False, True]]
    assert not failed, failed  # each time one inserted it, the other found it


def test_defining_a_running_experiment_while_another_runs_on_its_model_is_refused(
    postgres_url: str,
) -> None:
    """Nothing inserted and no row of its own: the other unique index, a real conflict,
    still raises (the conflict target's absence hides no second running experiment)."""
    db = open_postgres(_fresh(postgres_url), CONTROL_TIMEOUTS)
    db.create_schema(state_store.SCHEMA)
    running = ExperimentSpec(id="first", model="m", split={"tensorflow": 50.0, "pytorch": 50.0})
    second = running.model_copy(update={"id": "second"})
    for spec in (running, second):
        define = Event(spec.id, "define", "configured", spec.model_dump(mode="json"), 1.0)
        with db.transaction() as cursor:
            state_store.add_event(db, cursor, define)
            state_store.add_event(db, cursor, Event(spec.id, "start", "admin", {}, 2.0))
    with db.transaction() as cursor:
        assert state_store.define(db, cursor, running, Event("first", "define", "c", {}, 3.0))
    try:
        with db.transaction() as cursor:
            state_store.define(db, cursor, second, Event("second", "define", "c", {}, 3.0))
    except psycopg.IntegrityError as exc:
        assert "another experiment is running on model m" in str(exc)
    else:
        raise AssertionError("a second running experiment on model m was defined")
    assert set(state_store.load(db)) == {"first"}
    db.close()
