"""The policy store: layer precedence, persistence, and two stores following each other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.control.database import open_sqlite
from gateway.control.plane import ControlPlane
from gateway.routing.policy_store import PolicyStore
from gateway.settings import ModelPolicy

CONFIGURED = ModelPolicy(weights={"tensorflow": 50, "pytorch": 50})
EXPERIMENT = ModelPolicy(weights={"tensorflow": 80, "pytorch": 20}, shadow_sample_rate=0.0)
OVERRIDE = ModelPolicy(weights={"tensorflow": 100, "pytorch": 0})


def _store(path: Path | None) -> tuple[ControlPlane, PolicyStore]:
    control = ControlPlane(lambda: open_sqlite(path), poll_s=0.02)
    return control, PolicyStore({"m": CONFIGURED}, control, configured_by="test.yaml")


async def _until(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    """Poll `condition` (the event loop keeps running the followers) until a deadline."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_the_top_layer_present_is_in_force() -> None:
    async def scenario() -> None:
        control, store = _store(None)
        await control.start()
        try:
            assert store.route("m").layer == "configured" and store.effective("m") == CONFIGURED
            await store.set_layer("m", "override", OVERRIDE, "alice", "incident 12")
            await store.set_layer("m", "experiment", EXPERIMENT, "experiment m-ab", "start")
            assert store.route("m").layer == "override"  # an experiment starting stays below
            assert store.effective("m") == OVERRIDE
            await store.clear_layer("m", "override")
            assert store.route("m").layer == "experiment" and store.effective("m") == EXPERIMENT
            await store.clear_experiment_layer("m", "experiment other")  # not its layer: kept
            assert store.route("m").layer == "experiment"
            await store.clear_experiment_layer("m", "experiment m-ab")
            assert store.route("m").layer == "configured" and store.effective("m") == CONFIGURED
        finally:
            await control.aclose()

    _run(scenario)


def test_layers_record_who_when_and_why() -> None:
    async def scenario() -> None:
        control, store = _store(None)
        await control.start()
        try:
            before = time.time()
            await store.set_layer("m", "override", OVERRIDE, "alice", "incident 12")
            described = store.describe("m")
            override = described["layers"]["override"]
            assert (override["set_by"], override["reason"]) == ("alice", "incident 12")
            assert override["set_at"] >= before
            assert store.overridden_since("m") == override["set_at"]
            assert described["layers"]["experiment"] is None
            assert described["layers"]["configured"]["set_by"] == "test.yaml"
            assert described["effective"]["weights"] == {"tensorflow": 100.0, "pytorch": 0.0}
            with pytest.raises(ValueError, match="configured layer"):
                await store.set_layer("m", "configured", OVERRIDE, "alice", "no")
            with pytest.raises(KeyError):
                await store.set_layer("nope", "override", OVERRIDE, "alice", "no")
        finally:
            await control.aclose()

    _run(scenario)


def test_layers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"

    async def first() -> None:
        control, store = _store(path)
        await control.start()
        await store.set_layer("m", "override", OVERRIDE, "alice", "keep me")
        await control.aclose()

    async def second() -> None:
        control, store = _store(path)
        await control.start()
        try:
            assert store.route("m").layer == "override" and store.effective("m") == OVERRIDE
            assert store.layers("m")["override"].reason == "keep me"
        finally:
            await control.aclose()

    _run(first)
    _run(second)


def test_two_stores_on_one_database_follow_each_other(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"

    async def scenario() -> None:
        (control_a, a), (control_b, b) = _store(path), _store(path)
        await asyncio.gather(control_a.start(), control_b.start())  # at once: one schema
        try:
            await a.set_layer("m", "override", OVERRIDE, "alice", "from a")
            await _until(lambda: b.route("m").layer == "override")
            assert b.effective("m") == OVERRIDE and b.layers("m")["override"].set_by == "alice"
            await b.clear_layer("m", "override")
            await _until(lambda: a.route("m").layer == "configured")
            assert a.effective("m") == CONFIGURED
        finally:
            await asyncio.gather(control_a.aclose(), control_b.aclose())

    _run(scenario)
