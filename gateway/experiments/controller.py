"""The rollout controller: moves a running experiment's candidate share step by step.

Every gateway process runs one, but only the holder of the database lease `rollout`
(`lease`) acts; the others renew nothing and wait, and take over within `lease_s` when
the holder stops renewing (it crashed, hung, or shut down and released it). Each tick,
for each running experiment with a `rollout`:

1. the current step is the last `rollout` event since the experiment last started (none:
   the rollout begins, the first step is applied);
2. the rows logged since that step began (plus `settle_s`, so that requests routed by
   the previous split in processes that had not yet followed are left out) are analysed
   out of the serving process (the analyst process, within its budget), only when rows
   or labels came since the last look (their latest ts and arrival: index lookups,
   whatever the log's size), or the last look's `upto` was before the latest arrival.
   Each look reads only what arrived since the step's previous one
   (`gateway.experiments.log.increments`);
3. `rollout.next_rollout_action` decides; an advance, completion or rollback is stored
   as a `rollout` event (the action, and the analysis figures that justified it) with
   the new split, and routed through the policy store's experiment layer
   (`ExperimentManager.rollout_step`), so every worker and replica follows within a
   second. A hold writes nothing.

A rolled-back or completed rollout stays so until the experiment is started again
(pause, then start: the rollout begins again at its first step).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.control import lease
from gateway.control.plane import ControlPlane
from gateway.experiments import state_store
from gateway.experiments.log.records import Event
from gateway.experiments.manager import ExperimentManager
from gateway.experiments.rollout import ROLLED_BACK, RolloutAction, first_step, next_rollout_action
from gateway.settings import ExperimentSpec

LEASE = "rollout"
_FINAL = ("complete", "rollback")
Analyse = Callable[[str, float], Awaitable[dict[str, Any]]]


def holder_id() -> str:
    """This process's name in the lease: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def current_rollout(events: Sequence[Event]) -> Event | None:
    """The last `rollout` event since the experiment last started, or None."""
    last: Event | None = None
    for event in events:
        if event.action == "start":
            last = None
        elif event.action == "rollout":
            last = event
    return last


def evidence(analysis: dict[str, Any]) -> dict[str, Any]:
    """The analysis figures a transition records: units, SRM, decision, differences."""
    srm = analysis.get("srm") or {}
    decision = analysis.get("decision") or {}
    diffs = analysis.get("differences") or {}
    keep = ("estimate", "sequence", "p_value", "units")
    return {
        "units": srm.get("units"),
        "srm": {k: srm.get(k) for k in ("p_value", "flagged", "expected_shares")},
        "decision": {k: decision.get(k) for k in ("outcome", "metric", "sentence")},
        "differences": {m: {k: d.get(k) for k in keep} for m, d in diffs.items() if d},
    }


def _read_all(analysis: dict[str, Any], rows: object) -> bool:
    """Whether a look read every row the cue saw: its `upto` (an incremental look reads
    the rows logged up to the database's now less `LOOK_LAG_S`) at or after the cue's
    latest arrival (`Watermark.logged`); a look without either read them all."""
    upto, logged = analysis.get("upto"), getattr(rows, "logged", None)
    return upto is None or logged is None or float(upto) >= float(logged)


class RolloutController:
    """One process's rollout controller (acting only while it holds the lease).

    Args:
        manager: the experiments (their snapshot, and `rollout_step` to move a split).
        control: the control plane (lease, events).
        rows: `rows(experiment, since)`: a value that changes when prediction-log rows
            (every process's) at or after `since`, or labels, come; falsy without any row
            (`ExperimentService._log_rows`: the latest row's and label's ts).
        analyse_fn: `analyse_fn(experiment, since)`: the analysis of those rows, out of
            the serving process (`ExperimentService.analyse`: the analyst process on the
            database's aggregates); a `stale` result (the analysis timed out) holds.
        holder: this process's name in the lease (`holder_id()` by default).
        clock: seconds since the epoch.
        lease_s: how long a lease lasts unrenewed (a few ticks).
        settle_s: seconds after a step began before its rows count.
    """

    def __init__(
        self,
        manager: ExperimentManager,
        control: ControlPlane,
        rows: Callable[[str, float], Awaitable[object]],
        *,
        analyse_fn: Analyse,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        lease_s: float = 5.0,
        settle_s: float = 1.0,
    ) -> None:
        self._manager, self._control, self._rows = manager, control, rows
        self.holder = holder or holder_id()
        self._clock, self._analyse = clock, analyse_fn
        self._lease_s, self._settle_s = lease_s, settle_s
        self._looked: dict[str, tuple[float, object]] = {}  # experiment -> (step ts, rows)
        self.leader = False
        control.add_schema(lease.SCHEMA)

    async def tick(self) -> list[Event]:
        """Take or renew the lease; if held, act on every rollout. Returns the events."""
        if not await self._hold_lease():
            return []
        done = []
        for state in list(self._manager.states.values()):
            if state.status == "running" and state.spec.rollout is not None:
                event = await self._roll(state.spec)
                if event is not None:
                    done.append(event)
        return done

    async def release(self) -> None:
        """On shutdown: give the lease up, so another process acts at its next tick."""
        if self.leader:
            await self._control.transact(lease.release, LEASE, self.holder)
            self.leader = False

    async def _hold_lease(self) -> bool:
        now = self._clock()
        args = (LEASE, self.holder, now, self._lease_s)
        self.leader = bool(await self._control.transact(lease.acquire, *args))
        return self.leader

    async def _roll(self, spec: ExperimentSpec) -> Event | None:
        events = await self._control.read(state_store.read_events, spec.id)
        step_event = current_rollout(events)
        if step_event is None:
            return await self._apply(spec, first_step(spec), {})
        step = int(step_event.details.get("step", ROLLED_BACK))
        if step == ROLLED_BACK or step_event.details.get("kind") in _FINAL:
            return None
        since = step_event.ts + self._settle_s
        rows = await self._rows(spec.id, since)
        if not rows or self._looked.get(spec.id) == (step_event.ts, rows):
            return None  # nothing (new) to look at: the verdict cannot change
        analysis = await self._analyse(spec.id, since)
        if analysis.get("stale"):
            return None  # an earlier look's figures: wait for a fresh one
        if _read_all(analysis, rows):  # else rows arrived after its `upto`: look again
            self._looked[spec.id] = (step_event.ts, rows)
        action = next_rollout_action(spec, analysis, step)
        if action.kind == "hold":
            return None
        return await self._apply(spec, action, evidence(analysis))

    async def _apply(
        self, spec: ExperimentSpec, action: RolloutAction, figures: dict[str, Any]
    ) -> Event | None:
        if not await self._hold_lease():  # lost it while analysing: the new holder acts
            return None
        details = {**action.as_event_details(), "evidence": figures}
        event = Event(spec.id, "rollout", action.reason, details, self._clock())
        return event if await self._manager.rollout_step(event, action.split) else None
