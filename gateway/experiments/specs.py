"""Which experiments a gateway runs, checked at start, and where their database is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.catalog import Catalog
from gateway.core.types import FRAMEWORKS
from gateway.settings import ExperimentSpec, ExperimentsSettings, ModelPolicy


def default_specs(
    catalog: Catalog, configured: Callable[[str], ModelPolicy]
) -> list[ExperimentSpec]:
    """One sticky experiment per weighted model with both builds, on its configured split."""
    specs = []
    for model in catalog.names:
        policy, info = configured(model), catalog.get(model)
        if policy.mode != "weighted" or set(info.versions[info.latest]) != set(FRAMEWORKS):
            continue
        # The policy's arms: for a config that names none, one per framework following
        # `latest` (the newest both serve), so a version that lands moves both arms
        # together and an old one can be retired (issue 22).
        if len(policy.arms) < 2:
            continue
        arms, split = dict(policy.arms), {n: policy.weights.get(n, 0.0) for n in policy.arms}
        spec = ExperimentSpec(id=f"{model}-ab", model=model, arms=arms, split=split)
        specs.append(spec)
    return specs


def data_dir(settings: ExperimentsSettings, config_file: Path | None) -> Path | None:
    """The configured folder, else `data/` beside the config file, else None (in memory)."""
    if settings.data_dir is not None:
        return settings.data_dir
    return None if config_file is None else Path(config_file).resolve().parent / "data"


def check_specs(specs: Sequence[ExperimentSpec], catalog: Catalog) -> None:
    """Fail fast at start on unknown models, versions or duplicate ids."""
    if len({spec.id for spec in specs}) != len(specs):
        raise ValueError("experiment ids must be unique")
    for spec in specs:
        info = catalog.get(spec.model)  # NotFound names the model
        for name, arm in spec.arms.items():
            if arm.version is not None and arm.framework not in info.versions.get(arm.version, ()):
                message = f"arm {name}: no {arm.framework} build of version {arm.version}"
                raise ValueError(f"experiment {spec.id}: {message}")
