"""The rollout controller on a real control plane (SQLite) with a fake clock, a scripted
analysis and the policy store's experiment layer in memory: it begins, advances, holds,
completes and rolls back by `next_rollout_action`'s rule, records each transition with
its figures, and only the lease holder acts (another takes over once it stops renewing).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, NamedTuple

from gateway.control.database import open_sqlite
from gateway.control.plane import ControlPlane
from gateway.experiments.controller import RolloutController
from gateway.experiments.log.records import Event, Row
from gateway.experiments.manager import ExperimentManager
from gateway.experiments.rollout import ROLLED_BACK
from gateway.experiments.state_store import read_events
from gateway.settings import ExperimentSpec, RolloutSpec
from tests.unit.experiments.experiment_rows import row
from tests.unit.gateway.gateway_fakes import FakeLayers

SPEC = ExperimentSpec(
    id="m-ab",
    model="m",
    rollout=RolloutSpec(steps=[10, 50, 100], min_units_per_step=5),
)
LEASE_S = 5.0


def verdict(outcome: str, units: int = 10, srm_flagged: bool = False) -> dict[str, Any]:
    """An analysis as `analyse` returns it, reduced to what the rule reads."""
    return {
        "control": "tensorflow",
        "arms": {},
        "srm": {"units": {"tensorflow": units, "pytorch": 0}, "flagged": srm_flagged},
        "decision": {"outcome": outcome, "metric": "all", "sentence": f"the verdict: {outcome}"},
        "differences": {},
    }


class Process:
    """One gateway process: its control plane, experiments, layer and controller."""

    def __init__(self, path: Path, clock: list[float], log: list[Row], name: str) -> None:
        self.control = ControlPlane(lambda: open_sqlite(path), poll_s=0.02)
        self.layers = FakeLayers()
        self.manager = ExperimentManager([SPEC], self.control, self.layers, lambda: clock[0])
        self.verdicts: list[dict[str, Any]] = []
        self.looks = 0
        self.since: list[float] = []  # what the controller asked the log for
        self.controller = RolloutController(
            self.manager, self.control, self._rows, holder=name, clock=lambda: clock[0],
            analyse_fn=self._analyse, lease_s=LEASE_S, settle_s=1.0,
        )  # fmt: skip
        self._log = log

    async def start(self) -> None:
        await self.control.start()
        await self.manager.define()
        await self.manager.tick(0.0)

    async def _rows(self, experiment: str, since: float) -> int:
        self.since.append(since)
        return len([r for r in self._log if r[2] >= since])

    async def _analyse(self, exp: str, since: float) -> dict[str, Any]:
        self.looks += 1
        return self.verdicts[-1]

    def weights(self) -> dict[str, float]:
        assert self.layers.layer is not None
        return {str(arm): share for arm, share in self.layers.layer[0].weights.items()}


def run(path: Path, scenario: Any, processes: int = 1) -> Any:
    async def main() -> Any:
        clock, log = [100.0], list[Row]()
        procs = [Process(path, clock, log, f"p{i}") for i in range(processes)]
        for proc in procs:
            await proc.start()
        clock[0] += 1  # after the start event (the manager's events use this clock too)
        try:
            return await scenario(procs, clock, log)
        finally:
            for proc in procs:
                await proc.control.aclose()

    return asyncio.run(main())


def add_rows(log: list[Row], ts: float, count: int) -> None:
    log.extend(row(f"r{len(log)}", "tensorflow", f"u{len(log)}", ts, 5.0) for _ in range(count))


def test_rollout_begins_advances_holds_and_completes(tmp_path: Path) -> None:
    async def scenario(procs: list[Process], clock: list[float], log: list[Row]) -> Any:
        (p,) = procs
        first = await p.controller.tick()
        assert [e.details["step"] for e in first] == [0]
        assert p.weights() == {"tensorflow": 90, "pytorch": 10}
        clock[0] += 2
        add_rows(log, clock[0], 3)
        p.verdicts.append(verdict("candidate_non_inferior", units=3))  # below the minimum
        assert await p.controller.tick() == [] and p.looks == 1
        assert await p.controller.tick() == [] and p.looks == 1  # no new rows: no new look
        add_rows(log, clock[0], 7)
        p.verdicts.append(verdict("inconclusive"))
        assert await p.controller.tick() == [] and p.looks == 2
        add_rows(log, clock[0], 1)
        p.verdicts.append(verdict("candidate_non_inferior"))
        (advance,) = await p.controller.tick()
        assert advance.details["kind"] == "advance" and advance.details["step"] == 1
        assert advance.details["evidence"]["decision"]["outcome"] == "candidate_non_inferior"
        assert advance.details["evidence"]["units"] == {"tensorflow": 10, "pytorch": 0}
        assert p.weights() == {"tensorflow": 50, "pytorch": 50}
        assert await p.controller.tick() == []  # the new step has no rows after it yet
        assert p.since[-1] == advance.ts + 1.0  # its rows, once the processes followed
        clock[0] += 2
        add_rows(log, clock[0], 1)
        (to_100,) = await p.controller.tick()
        assert to_100.details["step"] == 2 and p.weights() == {"tensorflow": 0, "pytorch": 100}
        clock[0] += 2
        add_rows(log, clock[0], 1)
        (done,) = await p.controller.tick()
        assert done.details["kind"] == "complete"
        add_rows(log, clock[0], 1)
        assert await p.controller.tick() == []  # completed: nothing more to do
        events = await p.control.read(read_events, "m-ab")
        return [e.details["step"] for e in events if e.action == "rollout"], p.manager

    steps, manager = run(tmp_path / "db.sqlite3", scenario)
    assert steps == [0, 1, 2, 2]
    assert manager.get("m-ab").spec.split == {"tensorflow": 0, "pytorch": 100}


def test_a_guardrail_breach_rolls_back_at_once_and_stays_back(tmp_path: Path) -> None:
    async def scenario(procs: list[Process], clock: list[float], log: list[Row]) -> Any:
        (p,) = procs
        await p.controller.tick()
        clock[0] += 2
        add_rows(log, clock[0], 2)  # fewer units than the minimum: a breach still acts
        p.verdicts.append(verdict("withheld_srm", units=2, srm_flagged=True))
        (back,) = await p.controller.tick()
        assert back.details["kind"] == "rollback" and back.details["step"] == ROLLED_BACK
        assert back.details["metric"] == "srm" and back.details["evidence"]["srm"]["flagged"]
        assert p.weights() == {"tensorflow": 100, "pytorch": 0}
        add_rows(log, clock[0] + 2, 20)
        p.verdicts.append(verdict("candidate_superior"))
        assert await p.controller.tick() == []  # rolled back: an admin restarts it
        return p.looks

    assert run(tmp_path / "db.sqlite3", scenario) == 1


def test_only_the_lease_holder_acts_and_another_takes_over(tmp_path: Path) -> None:
    async def scenario(procs: list[Process], clock: list[float], log: list[Row]) -> Any:
        first, second = procs
        assert len(await first.controller.tick()) == 1 and first.controller.leader
        assert await second.controller.tick() == [] and not second.controller.leader
        for p in procs:
            p.verdicts.append(verdict("candidate_non_inferior"))
        clock[0] += 2
        add_rows(log, clock[0], 10)
        assert await second.controller.tick() == [] and second.looks == 0  # not its turn
        clock[0] += LEASE_S  # the holder stops renewing: its lease expires
        (advance,) = await second.controller.tick()
        assert second.controller.leader and advance.details["step"] == 1
        assert await first.controller.tick() == [] and not first.controller.leader
        await second.controller.release()  # shutting down: the other takes it at once
        assert await first.controller.tick() == [] and first.controller.leader
        events = await first.control.read(read_events, "m-ab")
        return [e.details["step"] for e in events if e.action == "rollout"]

    assert run(tmp_path / "db.sqlite3", scenario, processes=2) == [0, 1]


def test_a_paused_rollout_is_left_alone_and_restarts_at_its_first_step(tmp_path: Path) -> None:
    async def scenario(procs: list[Process], clock: list[float], log: list[Row]) -> Any:
        (p,) = procs
        await p.controller.tick()
        clock[0] += 2
        add_rows(log, clock[0], 10)
        p.verdicts.append(verdict("candidate_non_inferior"))
        (advance,) = await p.controller.tick()
        clock[0] += 1
        await p.manager.transition("m-ab", "pause", "look at it")
        late = Event("m-ab", "rollout", "a tick that read the state before the pause", {})
        assert not await p.manager.rollout_step(late, {"tensorflow": 0, "pytorch": 100})
        add_rows(log, clock[0] + 2, 10)
        assert await p.controller.tick() == [] and p.layers.layer is None  # paused: no layer
        clock[0] += 1
        await p.manager.transition("m-ab", "start", "go on")
        clock[0] += 1
        (again,) = await p.controller.tick()
        events = await p.control.read(read_events, "m-ab")
        return advance.details["step"], again.details, [e.action for e in events], p.weights()

    step, again, actions, weights = run(tmp_path / "db.sqlite3", scenario)
    assert step == 1 and again["kind"] == "advance" and again["step"] == 0
    assert actions == ["define", "start", "rollout", "rollout", "pause", "start", "rollout"]
    assert weights == {"tensorflow": 90, "pytorch": 10}


def test_a_look_that_read_up_to_before_the_latest_arrival_is_taken_again(tmp_path: Path) -> None:
    """An incremental look reads the rows logged up to its `upto` (the database's now less
    the writers' lag): while the cue's latest arrival is later, the next tick looks again
    though no row came since; once a look reads up to it, the ticks stop looking."""

    class Cue(NamedTuple):
        latest: float
        labelled: float
        logged: float

    async def scenario(procs: list[Process], clock: list[float], log: list[Row]) -> Any:
        (p,) = procs
        cue = Cue(105.0, 0.0, 200.0)

        async def rows(experiment: str, since: float) -> Cue:
            return cue

        p.controller._rows = rows
        await p.controller.tick()  # the rollout begins (no look)
        looks = []
        for upto in (150.0, 190.0, 200.0, 200.0):
            p.verdicts.append({**verdict("inconclusive"), "upto": upto})
            await p.controller.tick()
            looks.append(p.looks)
        return looks

    looks = run(tmp_path / "db.sqlite3", scenario)
    assert looks == [1, 2, 3, 3]  # upto 150 and 190 < 200: again; 200 read it all: no more
