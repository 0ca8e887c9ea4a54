"""The analyst process: analyses out of the serving process, bounded by its timeout."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gateway.experiments.analyst import AnalysisUnavailable, Analyst
from gateway.experiments.log.store import SqliteLogStore
from gateway.experiments.stats.analysis import analyse, analyse_store
from tests.unit.stats.test_experiments_aggregates import assert_same, fill

# A stand-in analyst: ready, answers its first request, then never answers again.
_ONCE = """
import json, struct, sys
header = struct.Struct("!I")
def send(message):
    payload = json.dumps(message).encode()
    sys.stdout.buffer.write(header.pack(len(payload)) + payload)
    sys.stdout.buffer.flush()
send({"ready": True})
count = 0
while head := sys.stdin.buffer.read(4):
    request = json.loads(sys.stdin.buffer.read(header.unpack(head)[0]))
    count += 1
    if count == 1:
        send({"result": {"experiment": request["experiment"], "pid": __import__("os").getpid()}})
"""
_NEVER = _ONCE.replace("count == 1", "count == 0")  # ready, then never answers


def test_the_analyst_process_gives_the_row_paths_analysis(tmp_path: Path) -> None:
    store = SqliteLogStore(tmp_path / "predictions.sqlite3")
    events = fill(store, 0, 200)
    want = analyse(store.records("exp"), events, "exp")
    direct = analyse_store(store, "exp", None, events)
    store.close()

    async def scenario() -> tuple[dict, dict, int | None]:
        analyst = Analyst(None, tmp_path)
        try:
            first, second = await asyncio.gather(
                analyst.analyse("exp", None, events), analyst.analyse("exp", None, events)
            )
            return first, second, analyst.pid
        finally:
            await analyst.aclose()

    first, second, pid = asyncio.run(scenario())
    assert pid is not None and pid != os.getpid()  # never in this (the serving) process
    assert_same(first, want)
    assert first == second == direct  # two reads at once: one analysis, both answered


def test_a_slow_analysis_answers_the_latest_result_with_its_age_then_restarts(
    tmp_path: Path,
) -> None:
    clock = [1000.0]

    async def scenario() -> None:
        analyst = Analyst(None, tmp_path, timeout_s=0.5, clock=lambda: clock[0])
        analyst._command = (sys.executable, "-c", _NEVER)
        try:
            with pytest.raises(AnalysisUnavailable):  # nothing before, and no answer: 503
                await analyst.analyse("exp", None, [])
            assert analyst.pid is None  # the stuck analysis was ended
            analyst._command, analyst.timeout_s = (sys.executable, "-c", _ONCE), 60.0
            fresh = await analyst.analyse("exp", None, [])  # a new child answers
            assert "stale" not in fresh and fresh["pid"] != os.getpid()
            clock[0] += 7.5
            await analyst._kill()
            analyst._command, analyst.timeout_s = (sys.executable, "-c", _NEVER), 0.5
            late = await analyst.analyse("exp", None, [])  # over the timeout: the latest
            assert late["stale"]["age_s"] == 7.5 and late["stale"]["computed_at"] == 1000.0
            assert late["experiment"] == "exp" and analyst.pid is None
        finally:
            await analyst.aclose()

    asyncio.run(scenario())


def test_a_failing_analysis_is_a_503_naming_the_failure(tmp_path: Path) -> None:
    async def scenario() -> None:
        analyst = Analyst("sqlite:///" + str(tmp_path / "missing" / "x.sqlite3"), None)
        analyst._command = (sys.executable, "-c", _ONCE.replace(
            'send({"result"', 'send({"error": "OperationalError: no such table"}) or ({"result"'
        ))  # fmt: skip
        try:
            with pytest.raises(AnalysisUnavailable, match="no such table") as caught:
                await analyst.analyse("exp", None, [])
            assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "5"
        finally:
            await analyst.aclose()

    asyncio.run(scenario())


# A stand-in analyst that answers every request with how many it has had.
_COUNTING = _ONCE.replace("if count == 1:", "if True:").replace(
    '"pid": __import__("os").getpid()', '"count": count'
)


def test_the_budget_spaces_analyses_and_reads_in_between_share_the_next(tmp_path: Path) -> None:
    now = [100.0]  # the budget's clock (monotonic seconds), moved by hand

    async def scenario() -> None:
        analyst = Analyst(None, tmp_path, budget=0.25, monotonic=lambda: now[0])
        analyst._command = (sys.executable, "-c", _COUNTING)
        ask = analyst._ask

        async def two_seconds(request: dict) -> dict:  # every analysis "takes" 2 s
            answer = await ask(request)
            now[0] += 2.0
            return answer

        analyst._ask = two_seconds  # type: ignore[method-assign]
        try:
            first = await analyst.analyse("exp", None, [])
            assert first["count"] == 1
            # 2 s at a quarter of the wall time: the next starts 2 * 0.75 / 0.25 = 6 s later
            assert analyst._not_before == pytest.approx(102.0 + 6.0)
            now[0] = analyst._not_before - 0.05  # 50 ms of the pause left (real seconds)
            reads = await asyncio.gather(*(analyst.analyse("exp", None, []) for _ in range(3)))
            assert [r["count"] for r in reads] == [2, 2, 2]  # one analysis for the three
            cached = await analyst.analyse("exp", None, [], max_age_s=60.0)
            assert cached["count"] == 2  # the latest, as old as the client allows
            now[0] = analyst._not_before
            assert (await analyst.analyse("exp", None, []))["count"] == 3  # fresh again
        finally:
            await analyst.aclose()

    asyncio.run(scenario())


def test_a_budget_outside_0_1_is_refused(tmp_path: Path) -> None:
    for budget in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="budget"):
            Analyst(None, tmp_path, budget=budget)


def test_the_logs_other_reads_run_in_the_analyst_process(tmp_path: Path) -> None:
    store = SqliteLogStore(tmp_path / "predictions.sqlite3")
    fill(store, 0, 120)
    want_summary, want_counts = store.summary(), store.arm_counts("exp")
    store.close()

    async def scenario() -> tuple[object, object]:
        analyst = Analyst(None, tmp_path)
        try:
            with pytest.raises(ValueError, match="records"):  # rows never cross the pipe
                await analyst.read("records", "exp")
            return await analyst.read("summary"), await analyst.read("arm_counts", "exp")
        finally:
            await analyst.aclose()

    summary, counts = asyncio.run(scenario())
    assert summary == want_summary and counts == want_counts
    assert sum(want_counts.values()) > 0


def test_on_sqlite_the_budget_charges_the_childs_cpu_not_its_wait(tmp_path: Path) -> None:
    now = [50.0]
    reporting = _COUNTING.replace('"count": count}', '"count": count}, "cpu_s": 0.5')

    async def scenario() -> None:
        analyst = Analyst(None, tmp_path, budget=0.5, monotonic=lambda: now[0])
        analyst._command = (sys.executable, "-c", reporting)
        ask = analyst._ask

        async def held_back(request: dict) -> dict:  # 4 s of wall time, 0.5 s of CPU
            answer = await ask(request)
            now[0] += 4.0
            return answer

        analyst._ask = held_back  # type: ignore[method-assign]
        try:
            await analyst.analyse("exp", None, [])
            assert analyst._not_before == pytest.approx(54.0 + 0.5)  # 0.5 s * 0.5 / 0.5
        finally:
            await analyst.aclose()

    asyncio.run(scenario())


_SLOW = _COUNTING.replace("    if True:", "    __import__('time').sleep(1.0)\n    if True:")


def test_the_child_is_background_work_and_leaves_it_when_starved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.experiments import analyst as module

    monkeypatch.setattr(module, "_ESCALATE_MIN_S", 0.1)  # "starved": 0.1 s without answer
    seen: list[tuple[int, int]] = []

    async def scenario() -> None:
        analyst = Analyst(None, tmp_path)
        analyst._command = (sys.executable, "-c", _SLOW)
        try:
            await analyst._start()
            pid = analyst.pid
            assert pid is not None
            module.idle_priority(pid)  # as the real child does after its start
            seen.append((os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)))
            reading = asyncio.create_task(analyst.analyse("exp", None, []))
            for _ in range(200):  # bounded poll: the escalation comes after 0.1 s
                if analyst._escalated:
                    break
                await asyncio.sleep(0.01)
            seen.append((os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)))
            for _ in range(200):  # and 2 x 0.1 s later, the next step (a bounded poll)
                if os.getpriority(os.PRIO_PROCESS, pid) < 19:
                    break
                await asyncio.sleep(0.01)
            higher = (os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid))
            assert (await reading)["count"] == 1
            seen.append((os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)))
            seen.append(higher)
        finally:
            await analyst.aclose()

    asyncio.run(scenario())
    assert seen[0][0] == os.SCHED_IDLE  # background work
    assert seen[1] == (os.SCHED_OTHER, 19)  # starved: the lowest normal priority first
    assert seen[2][0] == os.SCHED_IDLE  # answered: background work again
    if os.geteuid() == 0:  # a process may raise its child's priority: it went on to 10
        assert seen[3][1] in (10, 0)


def test_the_budgets_pause_never_outlasts_half_a_reads_timeout(tmp_path: Path) -> None:
    now = [0.0]

    async def scenario() -> None:
        analyst = Analyst(None, tmp_path, timeout_s=10.0, budget=0.1, monotonic=lambda: now[0])
        analyst._command = (sys.executable, "-c", _COUNTING)
        ask = analyst._ask

        async def long_one(request: dict) -> dict:  # 2 s: at 0.1 the pause would be 18 s
            answer = await ask(request)
            now[0] += 2.0
            return answer

        analyst._ask = long_one  # type: ignore[method-assign]
        try:
            await analyst.analyse("exp", None, [])
            assert analyst._not_before == pytest.approx(2.0 + 5.0)  # half of the 10 s timeout
        finally:
            await analyst.aclose()

    asyncio.run(scenario())
