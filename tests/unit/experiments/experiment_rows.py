"""Synthetic prediction-log rows and events for analysis tests (no gateway, no database)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.experiments.log.records import Event, Row
from gateway.settings import ExperimentSpec

CONTROL, CANDIDATE = "tensorflow", "pytorch"


def define(experiment: str = "exp", ts: float = 0.0, **spec: Any) -> Event:
    """The `define` event the manager writes, from an ExperimentSpec (split 50/50, as
    `experiment_rows` draws by default, unless given: with a rollout it would otherwise
    be the first step's)."""
    spec.setdefault("split", {CONTROL: 50.0, CANDIDATE: 50.0})
    model = ExperimentSpec(id=experiment, model="m", **spec)
    return Event(experiment, "define", "configured", model.model_dump(mode="json"), ts)


def row(
    request_id: str,
    arm: str,
    unit: str | None,
    ts: float,
    latency_ms: float,
    *,
    kind: str = "serve",
    status: int = 200,
    top1: int | None = 0,
    label: int | None = None,
    agreed: int | None = None,
    framework: str | None = None,
) -> Row:
    """One row in `RECORD_COLUMNS` order (label last, as the store's join gives it)."""
    return (
        request_id,
        kind,
        ts,
        "exp",
        "m",
        arm,
        1,
        unit,
        latency_ms,
        status,
        top1 if status == 200 else None,
        None,
        agreed,
        0,
        framework or arm,
        label,
    )


def experiment_rows(
    seed: int,
    units: int,
    accuracy: dict[str, float],
    share: float = 0.5,
    latency: dict[str, float] | None = None,
    requests_per_unit: int = 2,
) -> list[Row]:
    """`units` routing keys, each sticky to one arm (candidate with prob. `share`), each
    sending `requests_per_unit` labelled requests right with the arm's `accuracy`."""
    rng = np.random.default_rng(seed)
    latency = latency or {CONTROL: 10.0, CANDIDATE: 10.0}
    rows = []
    for u in range(units):
        arm = CANDIDATE if rng.random() < share else CONTROL
        for k in range(requests_per_unit):
            right = rng.random() < accuracy[arm]
            rows.append(
                row(
                    f"r{u}-{k}",
                    arm,
                    f"user{u}",
                    u + k / 10,
                    latency[arm] + rng.gamma(2.0, 0.5),
                    label=0 if right else 1,
                )
            )
    return rows
