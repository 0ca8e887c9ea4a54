"""Experiments as objects: their state, their admin transitions, and the routing they own.

A running experiment owns its model's routing policy (weighted split, stickiness,
shadow sampling, arm versions); pausing or ending it gives the model back its
configured policy. Every transition is an `Event` (time + reason) kept in the log's
store and replayed at start, so a restarted gateway continues where it stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

import grpc

from gateway.errors import BadRequest, GatewayError, NotFound
from gateway.experiments.records import Event, Row
from gateway.settings import ExperimentSpec, ModelPolicy
from gateway.types import Framework

Status = Literal["scheduled", "running", "paused", "ended"]
_ARM, _EXPERIMENT, _STATUS, _KIND = 5, 3, 9, 1  # positions in a log row
_ALLOWED = {  # action -> the states it may start from
    "start": ("scheduled", "paused"),
    "pause": ("running",),
    "end": ("scheduled", "running", "paused"),
}


class Conflict(GatewayError):
    """The experiment's state does not allow the call (e.g. starting an ended one)."""

    status = HTTPStatus.CONFLICT
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


@dataclass
class ExperimentState:
    spec: ExperimentSpec
    status: Status = "scheduled"
    served: Counter[str] = field(default_factory=Counter)  # successful requests per arm

    def as_dict(self) -> dict[str, Any]:
        return {**self.spec.model_dump(mode="json"), "status": self.status}

    @property
    def sample_reached(self) -> bool:
        size = self.spec.stop.sample_size_per_arm
        arms = [arm.framework for arm in self.spec.arms]
        return size is not None and all(self.served[arm] >= size for arm in arms)


class ExperimentManager:
    """All experiments of one gateway; `active` maps model -> running experiment id."""

    def __init__(
        self,
        specs: Sequence[ExperimentSpec],
        base_policy: Callable[[str], ModelPolicy],
        set_policy: Callable[[str, ModelPolicy], None],
    ) -> None:
        self.states = {spec.id: ExperimentState(spec) for spec in specs}
        self.active: dict[str, str] = {}
        self.pending: list[Event] = []  # transitions not yet persisted
        self._base_policy = base_policy
        self._set_policy = set_policy

    def get(self, experiment: str) -> ExperimentState:
        state = self.states.get(experiment)
        if state is None:
            raise NotFound(f"no experiment '{experiment}'")
        return state

    def load_counts(self, counts: dict[tuple[str, str], int]) -> None:
        """Served requests per (experiment, arm) already in the log (at start)."""
        for (experiment, arm), count in counts.items():
            if experiment in self.states:
                self.states[experiment].served[arm] = count

    def restore(self, events: Sequence[Event], now: float | None = None) -> None:
        """Replay stored transitions; define (and start when due) the ones never seen."""
        seen = {event.experiment for event in events}
        for event in events:
            if event.experiment in self.states:
                self._apply(self.states[event.experiment], event)
        for state in self.states.values():
            if state.spec.id not in seen:
                self._emit(state, "define", "configured", state.spec.model_dump(mode="json"))
        self.tick(now if now is not None else time.time())

    def transition(self, experiment: str, action: str, reason: str) -> Event:
        """Admin calls: `start` (also resumes), `pause`, `end`."""
        if not reason.strip():
            raise BadRequest("reason: a reason is required for every experiment change")
        state = self.get(experiment)
        if action not in _ALLOWED:
            raise NotFound(f"no experiment action '{action}'")
        if state.status not in _ALLOWED[action]:
            raise Conflict(f"experiment {experiment} is {state.status}; cannot {action} it")
        if action == "start":
            self._check_model_free(state)
        return self._emit(state, action, reason)

    def change_split(self, experiment: str, split: dict[Framework, float], reason: str) -> Event:
        if not reason.strip():
            raise BadRequest("reason: a reason is required for every experiment change")
        state = self.get(experiment)
        if state.status == "ended":
            raise Conflict(f"experiment {experiment} has ended")
        try:
            ExperimentSpec.model_validate({**state.spec.model_dump(), "split": split})
        except ValueError as exc:
            raise BadRequest(f"split: {exc}") from None
        return self._emit(state, "split", reason, {"split": split})

    def observe(self, rows: Sequence[Row]) -> None:
        """Count served requests per arm (from written log rows); apply the stop rule."""
        for row in rows:
            state = self.states.get(row[_EXPERIMENT]) if row[_EXPERIMENT] else None
            if state is not None and row[_KIND] == "serve" and row[_STATUS] == 200:
                state.served[row[_ARM]] += 1
        for state in self.states.values():
            if state.status == "running" and state.sample_reached:
                self._emit(state, "end", "stop rule: sample size per arm reached")

    def tick(self, now: float) -> None:
        """Start experiments whose start time came, end those whose end date passed."""
        for state in self.states.values():
            spec = state.spec
            end_at = spec.stop.end_at.timestamp() if spec.stop.end_at else None
            if state.status != "ended" and end_at is not None and now >= end_at:
                self._emit(state, "end", "stop rule: end date reached")
            elif state.status == "scheduled" and self._due(spec, now) and self._free(state):
                self._emit(state, "start", "start time reached")

    def _emit(
        self,
        state: ExperimentState,
        action: str,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(state.spec.id, action, reason, details or {})
        self._apply(state, event)
        self.pending.append(event)
        return event

    def _apply(self, state: ExperimentState, event: Event) -> None:
        if event.action == "split":
            state.spec = state.spec.model_copy(update={"split": event.details["split"]})
        elif event.action in ("start", "pause", "end"):
            state.status = {"start": "running", "pause": "paused", "end": "ended"}[event.action]  # type: ignore[assignment]
        self._route(state)

    def _route(self, state: ExperimentState) -> None:
        model = state.spec.model
        if state.status == "running":
            self.active[model] = state.spec.id
            self._set_policy(model, experiment_policy(state.spec, self._base_policy(model)))
        elif self.active.get(model) == state.spec.id:
            del self.active[model]
            self._set_policy(model, self._base_policy(model))

    def _check_model_free(self, state: ExperimentState) -> None:
        if not self._free(state):
            other = self.active[state.spec.model]
            raise Conflict(f"model {state.spec.model} already runs experiment {other}")

    def _free(self, state: ExperimentState) -> bool:
        return self.active.get(state.spec.model, state.spec.id) == state.spec.id

    @staticmethod
    def _due(spec: ExperimentSpec, now: float) -> bool:
        return spec.start_at is None or spec.start_at.timestamp() <= now


def experiment_policy(spec: ExperimentSpec, base: ModelPolicy) -> ModelPolicy:
    """The model's policy while `spec` runs: its split, stickiness, shadow and versions."""
    versions = {arm.framework: arm.version for arm in spec.arms if arm.version is not None}
    return base.model_copy(
        update={
            "mode": "weighted",
            "weights": dict(spec.split),
            "sticky": spec.sticky,
            "shadow_sample_rate": spec.shadow_sample_rate,
            "mirror": spec.shadow_sample_rate > 0,
            "arm_versions": versions,
        }
    )
