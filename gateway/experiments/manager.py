"""Experiments as objects: their state, their transitions, and the routing layer they own.

A running experiment sets its model's `experiment` policy layer (weighted split,
stickiness, shadow sampling, arm versions) through the policy store; pausing or ending
it clears that layer, so the model falls back to whatever lies below or above it (an
admin override stays on top). State lives in the experiments database
(`state_store`); every process keeps a snapshot, re-read on every change by the
control plane, so `active` is the same in every worker and replica. Automatic
transitions (start time, end date, stop rule) are conditional updates: when every
process tries one, one succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import grpc
from pydantic import ValidationError

from gateway.control.database import Database
from gateway.control.plane import ControlPlane
from gateway.core.errors import BadRequest, GatewayError, NotFound
from gateway.experiments import state_store
from gateway.experiments.log.records import Event
from gateway.experiments.state_store import Status
from gateway.settings import ExperimentSpec, ModelPolicy

_ALLOWED: dict[str, tuple[Status, ...]] = {  # action -> the states it may start from
    "start": ("scheduled", "paused"),
    "pause": ("running",),
    "end": ("scheduled", "running", "paused"),
}


class Conflict(GatewayError):
    """The experiment's state does not allow the call (e.g. starting an ended one)."""

    status = HTTPStatus.CONFLICT
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class PolicyLayers(Protocol):
    """What experiments need from the routing policy store (passed in by the app)."""

    def configured_policy(self, model: str) -> ModelPolicy: ...
    def overridden_since(self, model: str) -> float | None: ...
    def experiment_layer_owner(self, model: str) -> str | None: ...
    async def set_experiment_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None: ...
    async def clear_experiment_layer(self, model: str, set_by: str) -> None: ...
    def effective(self, model: str) -> ModelPolicy: ...
    async def set_promoted_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ExperimentState:
    spec: ExperimentSpec
    status: Status = "scheduled"

    def as_dict(self) -> dict[str, Any]:
        return {**self.spec.model_dump(mode="json"), "status": self.status}

    def sample_reached(self, served: Mapping[str, int]) -> bool:
        """Has every arm served `stop.sample_size_per_arm` successful requests?"""
        size = self.spec.stop.sample_size_per_arm
        return size is not None and all(served.get(arm, 0) >= size for arm in self.spec.arms)


class ExperimentManager:
    """The configured experiments; `active` maps model -> running experiment id."""

    def __init__(
        self,
        specs: Sequence[ExperimentSpec],
        control: ControlPlane,
        layers: PolicyLayers,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._specs = {spec.id: spec for spec in specs}
        self._control = control
        self._layers = layers
        self._clock = clock
        self.states = {spec.id: ExperimentState(spec) for spec in specs}
        self.active: dict[str, str] = {}
        control.follow(self._reload, state_store.SCHEMA)

    def get(self, experiment: str) -> ExperimentState:
        state = self.states.get(experiment)
        if state is None:
            raise NotFound(f"no experiment '{experiment}'")
        return state

    def overridden_since(self, experiment: str) -> float | None:
        """When an admin override took the running experiment's model, else None."""
        state = self.get(experiment)
        if state.status != "running":
            return None
        return self._layers.overridden_since(state.spec.model)

    async def define(self) -> None:
        """Store the configured experiments no process stored yet (once each); give a
        running experiment whose layer is missing (e.g. a crash between the two writes,
        or a database from before the layers) its layer back."""
        for spec in self._specs.values():
            defined = spec.model_dump(mode="json")
            event = Event(spec.id, "define", "configured", defined, self._clock())
            await self._control.write(state_store.define, spec, event)
        for state in list(self.states.values()):
            owner = self._layers.experiment_layer_owner(state.spec.model)
            if state.status == "running" and owner != _owner(state.spec):
                await self._route(state, "gateway start: the running experiment's layer")

    async def transition(self, experiment: str, action: str, reason: str) -> Event:
        """Admin calls: `start` (also resumes), `pause`, `end`.

        Raises:
            BadRequest: no reason. NotFound: unknown experiment or action.
            Conflict: the state does not allow it, or the model runs another experiment.
        """
        _need_reason(reason)
        state = self.get(experiment)
        if action not in _ALLOWED:
            raise NotFound(f"no experiment action '{action}'")
        if state.status not in _ALLOWED[action]:
            raise Conflict(f"experiment {experiment} is {state.status}; cannot {action} it")
        if action == "start":
            self._check_model_free(state)
        event = Event(experiment, action, reason, ts=self._clock())
        if not await self._apply(event):
            now = self.get(experiment).status
            raise Conflict(f"experiment {experiment} is {now}; cannot {action} it")
        return event

    async def change_split(self, experiment: str, split: dict[str, float], reason: str) -> Event:
        _need_reason(reason)
        state = self.get(experiment)
        if state.status == "ended":
            raise Conflict(f"experiment {experiment} has ended")
        try:
            spec = ExperimentSpec.model_validate({**state.spec.model_dump(), "split": split})
        except ValidationError as exc:  # the rule's own sentence, not pydantic's dump
            message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise BadRequest(f"split: {message}") from None
        event = Event(experiment, "split", reason, {"split": split}, self._clock())
        if not await self._control.write(state_store.change_split, event, spec):
            raise Conflict(f"experiment {experiment} has ended")
        await self._route(self.get(experiment), reason)
        return event

    async def create(self, spec: ExperimentSpec, reason: str) -> Event:
        """Store an experiment defined at run time (`scheduled`; `tick` starts it when due).

        Raises:
            Conflict: an experiment with this id exists.
        """
        if spec.id in self.states:
            raise Conflict(f"experiment {spec.id} exists")
        event = Event(spec.id, "define", reason, spec.model_dump(mode="json"), self._clock())
        try:
            await self._control.write(state_store.create, spec, event)
        except self._control.integrity_error as exc:  # another process created it first
            raise Conflict(f"experiment {spec.id} exists") from exc
        return event

    async def rollout_step(self, event: Event, split: dict[str, float]) -> bool:
        """The rollout controller's transition: store `split` and its `rollout` event, and
        route by it; False (nothing changed) if the experiment no longer runs."""
        state = self.get(event.experiment)
        spec = state.spec.model_copy(update={"split": split})
        if not await self._control.write(state_store.rollout_step, event, spec):
            return False
        await self._route(self.get(event.experiment), event.reason)
        return True

    async def tick(self, now: float) -> None:
        """Start experiments whose start time came, end those whose end date passed."""
        for state in list(self.states.values()):
            spec = state.spec
            end_at = spec.stop.end_at.timestamp() if spec.stop.end_at else None
            if state.status != "ended" and end_at is not None and now >= end_at:
                await self.auto(spec.id, "end", "stop rule: end date reached")
            elif state.status == "scheduled" and _due(spec, now) and self._free(state):
                await self.auto(spec.id, "start", "start time reached")

    async def auto(self, experiment: str, action: str, reason: str) -> bool:
        """A rule's transition: True if this process made it, False if another did first."""
        try:
            return await self._apply(Event(experiment, action, reason, ts=self._clock()))
        except Conflict:
            return False

    async def _apply(self, event: Event) -> bool:
        state = self.get(event.experiment)
        try:
            done = await self._control.write(state_store.transition, event, _ALLOWED[event.action])
        except self._control.integrity_error as exc:
            other = self.active.get(state.spec.model, "another experiment")
            raise Conflict(f"model {state.spec.model} already runs experiment {other}") from exc
        if done:
            await self._route(self.get(event.experiment), event.reason)
        return bool(done)

    async def _route(self, state: ExperimentState, reason: str) -> None:
        model, set_by = state.spec.model, _owner(state.spec)
        if state.status == "running":
            policy = experiment_policy(state.spec, self._layers.configured_policy(model))
            await self._layers.set_experiment_layer(model, policy, set_by, reason)
        else:
            await self._layers.clear_experiment_layer(model, set_by)

    def _reload(self, db: Database) -> None:
        stored = state_store.load(db)  # configured ones and those created at run time
        states = {exp_id: ExperimentState(spec) for exp_id, spec in self._specs.items()}
        states.update({i: ExperimentState(s.spec, s.status) for i, s in stored.items()})
        active = {s.spec.model: i for i, s in states.items() if s.status == "running"}
        self.states, self.active = states, active

    def _check_model_free(self, state: ExperimentState) -> None:
        if not self._free(state):
            other = self.active[state.spec.model]
            raise Conflict(f"model {state.spec.model} already runs experiment {other}")

    def _free(self, state: ExperimentState) -> bool:
        return self.active.get(state.spec.model, state.spec.id) == state.spec.id


def _owner(spec: ExperimentSpec) -> str:
    """`set_by` of an experiment's policy layer."""
    return f"experiment {spec.id}"


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise BadRequest("reason: a reason is required for every experiment change")


def _due(spec: ExperimentSpec, now: float) -> bool:
    return spec.start_at is None or spec.start_at.timestamp() <= now


def experiment_policy(spec: ExperimentSpec, base: ModelPolicy) -> ModelPolicy:
    """The model's policy while `spec` runs: its arms (in their order: the split's
    intervals), split, stickiness and shadow; an arm of the base policy that the
    experiment does not name stays pinnable by `X-Arm` but gets no traffic."""
    arms = {**spec.arms, **{n: a for n, a in base.arms.items() if n not in spec.arms}}
    weights = {name: float(spec.split.get(name, 0.0)) for name in arms}
    primary = base.primary if base.primary in arms else spec.control
    return base.model_copy(
        update={
            "mode": "weighted",
            "arms": arms,
            "primary": primary,
            "weights": weights,
            "sticky": spec.sticky,
            "shadow_sample_rate": spec.shadow_sample_rate,
            "mirror": spec.shadow_sample_rate > 0,
            "arm_versions": {},
        }
    )
