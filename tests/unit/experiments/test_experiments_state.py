"""Experiments' state in the database: one auto-start among racing processes, one define,
state replayed from a database that only holds events, and the layer they own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.control.database import open_sqlite
from gateway.control.plane import ControlPlane
from gateway.experiments.log.records import Event
from gateway.experiments.manager import ExperimentManager
from gateway.experiments.state_store import read_events
from gateway.settings import ExperimentSpec
from tests.unit.gateway.gateway_fakes import FakeLayers

SPEC = ExperimentSpec(id="m-ab", model="m", split={"tensorflow": 70, "pytorch": 30})


def _process(path: Path) -> tuple[ControlPlane, ExperimentManager, FakeLayers]:
    control, layers = ControlPlane(lambda: open_sqlite(path), poll_s=0.02), FakeLayers()
    return control, ExperimentManager([SPEC], control, layers), layers


async def _start(control: ControlPlane, manager: ExperimentManager) -> None:
    await control.start()
    await manager.define()
    await manager.tick(0.0)


def test_racing_processes_define_and_start_an_experiment_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"

    async def scenario() -> list[str]:
        processes = [_process(path) for _ in range(3)]
        try:
            await asyncio.gather(*(c.start() for c, _, _ in processes))
            await asyncio.gather(*(m.define() for _, m, _ in processes))
            # every process's start rule fires at once: one transition happens
            due = [m.auto("m-ab", "start", "start time reached") for _, m, _ in processes]
            assert sorted(await asyncio.gather(*due)) == [False, False, True]
            for control, manager, _ in processes:
                await control.refresh()
                assert manager.get("m-ab").status == "running" and manager.active == {"m": "m-ab"}
            written = [fake.layer for _, _, fake in processes if fake.layer is not None]
            assert written  # by the winner (a process starting meanwhile may repeat it)
            for policy, set_by in written:
                assert set_by == "experiment m-ab" and policy.mode == "weighted"
                assert policy.weights == {"tensorflow": 70, "pytorch": 30}
            return [e.action for e in await processes[0][0].read(read_events, "m-ab")]
        finally:
            for control, _, _ in processes:
                await control.aclose()

    assert asyncio.run(scenario()) == ["define", "start"]


def test_state_is_replayed_from_a_database_that_only_holds_events(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = open_sqlite(path)  # what a gateway before the experiments table left behind
    old.conn.execute(
        "CREATE TABLE experiment_events (experiment TEXT NOT NULL, ts DOUBLE PRECISION"
        " NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL)"
    )
    split = {"split": {"tensorflow": 90, "pytorch": 10}}
    for ts, action, details in ((1, "define", {}), (2, "start", {}), (3, "split", split)):
        old.conn.execute(
            "INSERT INTO experiment_events VALUES (?, ?, ?, ?, ?)",
            Event("m-ab", action, "old", details, float(ts)).as_row(),
        )
    old.conn.commit()
    old.close()

    async def scenario() -> tuple[str, FakeLayers, list[str]]:
        control, manager, layers = _process(path)
        await _start(control, manager)
        try:
            events = await control.read(read_events, "m-ab")
            return manager.get("m-ab").status, layers, [e.action for e in events]
        finally:
            await control.aclose()

    status, layers, actions = asyncio.run(scenario())
    assert status == "running" and actions == ["define", "start", "split"]
    assert layers.layer is not None and layers.layer[0].weights == {"tensorflow": 90, "pytorch": 10}
    assert layers.layer[1] == "experiment m-ab"
