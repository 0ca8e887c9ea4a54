"""Promote an arm, and the models' own events (issue 22).

`promote MODEL ARM` makes an arm the model's default: the policy store's `promoted`
layer (above the YAML's `configured` one, below a running experiment's and an admin
override) pins the model to that arm. It is refused while an experiment on the model
runs, unless that experiment's rollout brought this very arm to 100% (then promoting
is how the rollout ends: the experiment is ended, its layer cleared) or the caller
forces it (the running experiment is ended too, whatever its state).

Promotions and retirements (`dualserve retire`) are rows of the `model_events` table in
the experiments database (one per event: model, time, action, arm or version, reason,
who, details), listed by `GET /admin/models/{model}/events` and `dualserve events`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.control.database import Database
from gateway.core.arms import Arm, known
from gateway.experiments.log.records import Event
from gateway.settings import ExperimentSpec, ModelPolicy

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS model_events (
        model TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, action TEXT NOT NULL,
        arm TEXT, version INTEGER, reason TEXT NOT NULL, set_by TEXT NOT NULL,
        details TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS model_events_by_model ON model_events (model, ts)",
)
_COLUMNS = "model, ts, action, arm, version, reason, set_by, details"


@dataclass(frozen=True)
class ModelEvent:
    """One event of a model's life: `promote` (an arm) or `retire` (a version).

    Attributes:
        model: the model's name.
        action: `promote` or `retire`.
        reason: why, as the caller said.
        set_by: who (the admin API's `set_by`, or `dualserve` for the CLI).
        arm: the promoted arm's name (None for a retirement).
        version: the retired version, or the promoted arm's (None: it follows `latest`).
        details: the promoted arm's framework and version, the experiment it ended, ...
        ts: seconds since the epoch.
    """

    model: str
    action: str
    reason: str
    set_by: str
    arm: str | None = None
    version: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.model, self.ts, self.action, self.arm, self.version, self.reason,
            self.set_by, json.dumps(self.details),
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelEvent:
        model, ts, action, arm, version, reason, set_by, details = row
        version = None if version is None else int(version)
        return cls(model, action, reason, set_by, arm, version, json.loads(details), float(ts))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_model_event(db: Database, cursor: Any, event: ModelEvent) -> None:
    """Insert one event (inside the caller's transaction)."""
    sql = f"INSERT INTO model_events ({_COLUMNS}) VALUES ({db.marks(8)})"
    cursor.execute(sql, event.as_row())


def read_model_events(db: Database, model: str | None = None) -> list[ModelEvent]:
    """Every model's events (or one model's), oldest first."""
    sql, params = f"SELECT {_COLUMNS} FROM model_events", ()
    params_typed: tuple[str, ...] = params
    if model is not None:
        sql, params_typed = sql + f" WHERE model = {db.placeholder}", (model,)
    rows = db.fetch(sql + " ORDER BY ts, action", params_typed)
    return [ModelEvent.from_row(row) for row in rows]


def record_model_event(db: Database, event: ModelEvent) -> None:
    """Store one event from outside a gateway (`dualserve retire`): the table is created
    first if this database has none yet."""
    db.create_schema(SCHEMA)
    with db.transaction() as cursor:
        add_model_event(db, cursor, event)


class PromoteRefused(ValueError):
    """The arm cannot be promoted now; the message says why and what to do."""


def model_arms(
    model: str, specs: Sequence[ExperimentSpec], policies: Sequence[ModelPolicy]
) -> dict[str, Arm]:
    """The arms a model's promotion may name: its experiments' (oldest first, so a later
    experiment's arm of the same name wins) and its policies' (configured, effective)."""
    arms: dict[str, Arm] = {}
    for policy in policies:
        arms.update(policy.arms)
    for spec in specs:
        if spec.model == model:
            arms.update(spec.arms)
    return arms


def check_arm(model: str, name: str, arms: Mapping[str, Arm]) -> Arm:
    """The arm named `name`, else PromoteRefused naming the known arms."""
    arm = arms.get(name)
    if arm is None:
        raise PromoteRefused(f"arm: {name!r} is no arm of {model}; {known(arms)}")
    return arm


def check_running(
    spec: ExperimentSpec, events: Sequence[Event], name: str, force: bool
) -> str | None:
    """May `name` be promoted while `spec` (its model's running experiment) runs?

    Returns:
        None when its rollout brought `name` to 100%; "forced" when only `force` allows it.

    Raises:
        PromoteRefused: it may not, saying what runs and how far its rollout is.
    """
    last = _last_rollout(events)
    details = last.details if last is not None else {}
    complete = (
        spec.rollout is not None
        and spec.candidate == name
        and details.get("kind") in ("advance", "complete")
        and float(details.get("share", 0.0)) >= 100.0
    )
    if complete:
        return None
    if force:
        return "forced"
    where = (
        "it has no rollout"
        if spec.rollout is None
        else f"its rollout of {spec.candidate} is at {details.get('share', 0.0)}%"
        f" ({details.get('kind', 'not begun')})"
    )
    raise PromoteRefused(
        f"experiment {spec.id} on model {spec.model} is still running and {where}; promote"
        f" {name} once a rollout of it reaches 100%, end the experiment first, or force it"
        ' (--force, or "force": true)'
    )


def _last_rollout(events: Sequence[Event]) -> Event | None:
    last: Event | None = None
    for event in events:
        if event.action == "start":
            last = None
        elif event.action == "rollout":
            last = event
    return last


def promoted_policy(
    base: ModelPolicy, name: str, arm: Arm, others: Mapping[str, Arm] | None = None
) -> ModelPolicy:
    """`base` (the configured policy) pinned to the promoted arm: it answers every
    request that pins nothing; the other arms (`base`'s and `others`, e.g. the ended
    experiment's) stay pinnable by `X-Arm`."""
    data = base.model_dump(mode="json")
    extra = {n: a.model_dump(mode="json") for n, a in (others or {}).items()}
    data.update({"arms": {**data["arms"], **extra, name: arm.model_dump(mode="json")}})
    data.update({"mode": "pinned", "primary": name, "arm_versions": {}})
    return ModelPolicy.model_validate(data)
