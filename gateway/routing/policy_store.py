"""The one owner of routing policy: three layers per model, kept in the database.

Per model, from bottom to top:

- `configured`: the gateway YAML's `models` entry (or `default_policy`);
- `promoted`: written by `promote MODEL ARM` (`gateway.experiments.promote`): the
  configured policy pinned to the promoted arm, the model's default until the next one;
- `experiment`: written by the experiments room while one of its experiments runs;
- `override`: written by an admin (`PATCH /admin/models/{m}/policy`), cleared by `DELETE`.

The effective policy is the top layer present. Each layer records who set it, when and
why. The experiment and override layers live in the `policy_layers` table of the
experiments database, and every process follows them through the control plane
(`gateway.control.plane`): the router reads an in-memory snapshot, never the database.
Nothing else writes routing state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from gateway.control.database import Database
from gateway.control.plane import ControlPlane
from gateway.settings import ModelPolicy

logger = logging.getLogger(__name__)
LayerName = Literal["configured", "promoted", "experiment", "override"]
LAYERS: tuple[LayerName, ...] = ("configured", "promoted", "experiment", "override")  # bottom up
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS policy_layers (
        model TEXT NOT NULL, layer TEXT NOT NULL, policy TEXT NOT NULL, set_by TEXT NOT NULL,
        set_at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (model, layer))""",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyLayer:
    """One layer of one model's policy. `set_at` is seconds since the epoch."""

    policy: ModelPolicy
    set_by: str
    set_at: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.model_dump(mode="json"),
            "set_by": self.set_by,
            "set_at": self.set_at,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Route:
    """What the router reads per request: the effective policy and the layer it is from."""

    layer: LayerName
    policy: ModelPolicy


@dataclass(frozen=True, slots=True)
class _Snapshot:
    layers: Mapping[str, Mapping[LayerName, PolicyLayer]]
    routes: Mapping[str, Route]


def source_label(source: str) -> str:
    """A label for who set a layer that names no folder: a path becomes its file name."""
    if "/" not in source and "\\" not in source:
        return source
    name = source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return f"gateway config ({name})" if name else "gateway config"


class PolicyStore:
    """Layers of every configured model; reads are in-memory, writes go to the database.

    Args:
        configured: the configured policy per model (the bottom layer, from the YAML).
        control: the control plane whose database holds the upper layers.
        configured_by: who set the configured layer; a file path is shown as
            "gateway config (<file name>)", never the path itself (SECURITY.md: no answer
            carries an internal path).
    """

    def __init__(
        self,
        configured: Mapping[str, ModelPolicy],
        control: ControlPlane,
        configured_by: str = "gateway config",
        clock: Callable[[], float] = time.time,
    ) -> None:
        now, label = clock(), source_label(configured_by)
        self._configured = {
            model: PolicyLayer(policy=p, set_by=label, set_at=now, reason="configured")
            for model, p in configured.items()
        }
        self._control = control
        self._clock = clock
        self._snapshot = _snapshot(self._configured, [])
        control.follow(self._reload, SCHEMA)

    @property
    def models(self) -> list[str]:
        return sorted(self._configured)

    def route(self, model: str) -> Route:
        """The effective policy of a configured model (KeyError for others)."""
        return self._snapshot.routes[model]

    def effective(self, model: str) -> ModelPolicy:
        return self._snapshot.routes[model].policy

    def layers(self, model: str) -> Mapping[LayerName, PolicyLayer]:
        """The layers present, by name (`configured` always is)."""
        return self._snapshot.layers[model]

    def describe(self, model: str) -> dict[str, Any]:
        """`{"effective": ..., "source": layer, "layers": {name: layer or None}}`."""
        layers, route = self.layers(model), self.route(model)
        return {
            "effective": route.policy.model_dump(mode="json"),
            "source": route.layer,
            "layers": {n: (layers[n].as_dict() if n in layers else None) for n in LAYERS},
        }

    async def set_layer(
        self, model: str, layer: LayerName, policy: ModelPolicy, set_by: str, reason: str
    ) -> None:
        """Write the `promoted`, `experiment` or `override` layer (the configured one is
        the YAML's).

        Raises:
            KeyError: `model` is not configured.
            ValueError: `layer` is `configured`.
        """
        self._check(model, layer)
        row = (model, layer, policy.model_dump_json(), set_by, self._clock(), reason)
        await self._control.write(_upsert, row)

    async def clear_layer(self, model: str, layer: LayerName, set_by: str | None = None) -> None:
        """Remove a layer; with `set_by`, only if that writer set it (an experiment clears
        its own layer, not a later experiment's)."""
        self._check(model, layer)
        await self._control.write(_delete, model, layer, set_by)

    # What the experiments room needs (see `gateway.experiments.manager.PolicyLayers`).
    def configured_policy(self, model: str) -> ModelPolicy:
        return self._configured[model].policy

    def overridden_since(self, model: str) -> float | None:
        override = self.layers(model).get("override")
        return None if override is None else override.set_at

    def experiment_layer_owner(self, model: str) -> str | None:
        experiment = self.layers(model).get("experiment")
        return None if experiment is None else experiment.set_by

    async def set_experiment_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None:
        await self.set_layer(model, "experiment", policy, set_by, reason)

    async def clear_experiment_layer(self, model: str, set_by: str) -> None:
        await self.clear_layer(model, "experiment", set_by)

    async def set_promoted_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None:
        await self.set_layer(model, "promoted", policy, set_by, reason)

    def _check(self, model: str, layer: LayerName) -> None:
        if model not in self._configured:
            raise KeyError(model)
        if layer == "configured":
            raise ValueError("the configured layer comes from the gateway config file")

    def _reload(self, db: Database) -> None:
        rows = db.fetch("SELECT model, layer, policy, set_by, set_at, reason FROM policy_layers")
        self._snapshot = _snapshot(self._configured, rows)


def _snapshot(configured: Mapping[str, PolicyLayer], rows: list[tuple[Any, ...]]) -> _Snapshot:
    layers: dict[str, dict[LayerName, PolicyLayer]] = {
        model: {"configured": layer} for model, layer in configured.items()
    }
    for model, name, policy, set_by, set_at, reason in rows:
        if model in layers and name in LAYERS[1:]:
            parsed = _parse(model, name, policy)
            if parsed is not None:
                layer = PolicyLayer(policy=parsed, set_by=set_by, set_at=set_at, reason=reason)
                layers[model][name] = layer
    routes = {model: _top(present) for model, present in layers.items()}
    return _Snapshot(layers=layers, routes=routes)


def _top(present: Mapping[LayerName, PolicyLayer]) -> Route:
    name = next(n for n in reversed(LAYERS) if n in present)
    return Route(name, present[name].policy)


def _parse(model: str, layer: str, text: str) -> ModelPolicy | None:
    try:
        return ModelPolicy.model_validate(json.loads(text))
    except (ValueError, ValidationError):  # e.g. written by another gateway version
        logger.warning("ignoring the unreadable %s layer of %s: %s", layer, model, text)
        return None


def _upsert(db: Database, cursor: Any, row: tuple[Any, ...]) -> None:
    cursor.execute(
        f"INSERT INTO policy_layers (model, layer, policy, set_by, set_at, reason)"
        f" VALUES ({db.marks(6)}) ON CONFLICT (model, layer) DO UPDATE SET"
        " policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at,"
        " reason = excluded.reason",
        row,
    )


def _delete(db: Database, cursor: Any, model: str, layer: str, set_by: str | None) -> None:
    p = db.placeholder
    sql = f"DELETE FROM policy_layers WHERE model = {p} AND layer = {p}"
    params: tuple[str, ...] = (model, layer)
    if set_by is not None:
        sql, params = sql + f" AND set_by = {p}", (*params, set_by)
    cursor.execute(sql, params)
