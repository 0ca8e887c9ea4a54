"""The prediction log on PostgreSQL: the same log and analysis as SQLite.

`postgres_url` (tests/integration/conftest.py) is a throwaway cluster; if PostgreSQL is
missing this fails, it never skips.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.control.database import Database, open_postgres, open_sqlite
from gateway.control.plane import ControlPlane
from gateway.experiments.log.records import Event, PredictionRecord
from gateway.experiments.log.store import LogStore, PostgresLogStore, SqliteLogStore
from gateway.experiments.log.top1 import to_row
from gateway.experiments.manager import ExperimentManager
from gateway.experiments.state_store import SCHEMA, add_event, read_events
from gateway.experiments.stats.analysis import analyse
from gateway.settings import ExperimentSpec
from tests.unit.gateway.gateway_fakes import FakeLayers, FakeUpstream, make_store, settings_for

ADMIN = {"Authorization": "Bearer admin-secret"}


def _synthetic_log() -> tuple[list[tuple], list[tuple[str, int]], list[Event]]:
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(400):
        arm = "tensorflow" if i % 2 else "pytorch"
        probs = rng.dirichlet(np.ones(10))[None, :].astype(np.float32)
        latency = rng.gamma(2, 0.002 if arm == "pytorch" else 0.003)
        status = 200 if i % 37 else 503
        outputs = {"probabilities": probs} if status == 200 else None
        out = PredictionRecord(
            request_id=f"r{i}", kind="serve", ts=1e9 + i, experiment="exp", model="m",
            arm=arm, version=1, routing_key=f"u{i}", latency_s=latency, status=status,
            outputs=outputs,
        )  # fmt: skip
        rows.append(to_row(out))
        labels.append((f"r{i}", int(rng.integers(10)) if i % 3 else int(probs.argmax())))
    spec = {"id": "exp", "model": "m", "arms": [{"framework": "tensorflow"}, {"framework": "pytorch"}],
            "split": {"tensorflow": 50, "pytorch": 50}, "stop": {"sample_size_per_arm": 150}}  # fmt: skip
    return (
        rows,
        labels,
        [Event("exp", "define", "configured", spec, 1e9), Event("exp", "start", "go", {}, 1e9)],
    )


def _fill(store: LogStore, db: Database) -> dict:
    """Log, feedback and (through a second connection, as the gateway's control plane
    writes them) experiment events; the analysis of what the log store reads back."""
    rows, labels, events = _synthetic_log()
    store.write_batch(rows)
    store.add_feedback(labels, 1e9)
    store.add_feedback(labels[:10], 1e9)  # idempotent
    db.create_schema(SCHEMA)
    with db.transaction() as cursor:
        for event in events:
            add_event(db, cursor, event)
    db.close()
    return analyse(store.records("exp"), store.events("exp"), "exp") | {"live": store.summary()}


def test_same_log_same_analysis_as_sqlite(postgres_url: str, tmp_path: Path) -> None:
    sqlite, pg = SqliteLogStore(tmp_path / "log.sqlite3"), PostgresLogStore(postgres_url)
    try:
        path = tmp_path / "log.sqlite3"
        assert _fill(pg, open_postgres(postgres_url)) == _fill(sqlite, open_sqlite(path))
        assert pg.records("exp") == sqlite.records("exp")
    finally:
        sqlite.close()
        pg.close()


def test_gateway_logs_feedback_and_analyses_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    upstreams = {"tensorflow": FakeUpstream("tensorflow"), "pytorch": FakeUpstream("pytorch")}
    settings = settings_for(make_store(tmp_path), experiments={"database_url": postgres_url})
    with TestClient(create_app(settings, upstreams)) as client:  # type: ignore[arg-type]
        for i in range(20):
            headers = {"X-Request-Id": f"pg-{i}", "X-Routing-Key": f"k{i}"}
            client.post(
                "/v1/models/toy:predict", json={"instances": [[0, 0, 9, 0]]}, headers=headers
            )
        items = [{"request_id": f"pg-{i}", "label": 2} for i in range(20)] + [
            {"request_id": "x", "label": 1}
        ]
        reply = client.post("/v1/feedback", json={"feedback": items})
        assert reply.status_code == 207 and reply.json()["recorded"] == 20
        analysis = client.get("/admin/experiments/toy-ab", headers=ADMIN).json()
    arms = analysis["arms"].values()
    assert sum(a["requests"] for a in arms) == 20
    assert all(a["accuracy"]["value"] in (None, 1.0) for a in arms)


def test_racing_gateways_create_one_schema_and_start_once(postgres_url: str) -> None:
    """Three control planes on a fresh database at once: the schema is created once (no
    catalog race), the experiment is defined once and one auto-start of three wins."""
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE race")
    url = postgres_url.rsplit("/", 1)[0] + "/race"
    spec = ExperimentSpec(id="m-ab", model="m")

    async def scenario() -> tuple[list[bool], list[str]]:
        planes = [ControlPlane(lambda: open_postgres(url)) for _ in range(3)]
        managers = [ExperimentManager([spec], plane, FakeLayers()) for plane in planes]
        try:
            await asyncio.gather(*(plane.start() for plane in planes))
            await asyncio.gather(*(m.define() for m in managers))
            won = await asyncio.gather(*(m.auto("m-ab", "start", "due") for m in managers))
            events = await planes[0].read(read_events, "m-ab")
            return sorted(won), [event.action for event in events]
        finally:
            for plane in planes:
                await plane.aclose()

    assert asyncio.run(scenario()) == ([False, False, True], ["define", "start"])


def test_one_of_racing_processes_takes_the_lease_and_another_takes_it_once_expired(
    postgres_url: str,
) -> None:
    """The rollout controller's election on PostgreSQL: the same conditional writes as on
    SQLite (tests/unit/experiments/test_experiments_controller.py) leave one holder at a time."""
    from gateway.control import lease

    async def scenario() -> tuple[list[bool], list[bool], bool, tuple[str, float] | None]:
        planes = [ControlPlane(lambda: open_postgres(postgres_url)) for _ in range(3)]
        for plane in planes:
            plane.add_schema(lease.SCHEMA)
        try:
            await asyncio.gather(*(plane.start() for plane in planes))
            race = [p.transact(lease.acquire, "race", f"p{i}", 100.0, 5.0) for i, p in enumerate(planes)]  # fmt: skip
            first = await asyncio.gather(*race)
            holder = first.index(True)
            # before expiry only the holder renews; after it, one other process takes over
            later = [
                await p.transact(lease.acquire, "race", f"p{i}", 104.0 if i == holder else 103.0, 5.0)
                for i, p in enumerate(planes)
            ]  # fmt: skip
            other = (holder + 1) % 3  # the holder stops renewing: expired at 109
            taken = await planes[other].transact(lease.acquire, "race", f"p{other}", 110.0, 5.0)
            return first, later, taken, await planes[0].read(lease.holder, "race")
        finally:
            for plane in planes:
                await plane.aclose()

    first, later, taken, holder = asyncio.run(scenario())
    assert sorted(first) == [False, False, True]
    assert later[first.index(True)] is True  # renewed at 104 until 109; at 103 nobody else took it
    assert sum(later) == 1 and taken
    assert holder == (f"p{(first.index(True) + 1) % 3}", 115.0)


_ANALYST_CHILD = """
import sys
from gateway.control.database import open_postgres
from gateway.experiments.analyst import (
    BackendPriority, analysis_session, idle_priority, lowest_normal_priority,
)
db = open_postgres(sys.argv[1], analysis_session(0))
idle_priority()  # as the analyst's main
backend = BackendPriority(db, period_s=3600.0)  # the thread's wait: never within the test
backend.start()
print(backend.pid, flush=True)
sys.stdin.readline()
lowest_normal_priority(0, 10)  # the gateway's escalation, one step
backend.follow()  # what the analyst does before each request
print("escalated", flush=True)
sys.stdin.readline()
"""


def test_the_analysts_postgres_backend_follows_the_analysts_priority(postgres_url: str) -> None:
    """The analyst's backend on this host runs as the analyst does: `SCHED_IDLE`, then
    nice 10 once escalated; another session's backend is left at normal priority."""
    import os
    import subprocess
    import sys

    import psycopg

    child = subprocess.Popen(
        [sys.executable, "-c", _ANALYST_CHILD, postgres_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        pid = int(child.stdout.readline())
        with psycopg.connect(postgres_url) as other:
            bystander = other.info.backend_pid
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            assert os.sched_getscheduler(bystander) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, bystander) == 0
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "escalated"
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            assert os.getpriority(os.PRIO_PROCESS, pid) == 10
            assert os.sched_getscheduler(bystander) == os.SCHED_OTHER
    finally:
        child.stdin.close()
        child.wait(timeout=30)
