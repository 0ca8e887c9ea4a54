"""What the gateway knows about models: versions and signatures, from the manifest, and
which versions each backend serves now.

Requests are checked here, before anything leaves the gateway: an unknown model or
version is a 404, a wrong tensor name, dtype or shape a 400 naming the problem.

Built once from the manifest (`Catalog.from_store`), the catalog assumes every version the
manifest records is served by the frameworks that export it. With a follower attached
(`gateway.control.catalog_follower`, started in every worker), a model's `ModelInfo` is replaced,
in one assignment, whenever the manifest or what a backend serves changes: `versions` then
holds only the versions some backend serves, each with the frameworks serving it.

An arm may name a server other than its framework's configured one (issue 29: `torch-pt2`
on the OIP server beside TorchServe): `on_servers` holds the versions such a (framework,
server) serves: from the manifest, the versions with a `.pt2` export for (pytorch, oip);
with a follower, what that server says it serves. A pair it does not hold serves what the
framework serves.

`latest`, one rule for both arms: a request that names no version gets the newest
version that *both* frameworks serve, so an A/B split never compares v2 with v1. While no
version is served by both (one backend still loading the new one, or one of them down), it
gets the newest version the arm it was pinned to serves, else the newest any arm serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from gateway.core.arms import Arm
from gateway.core.errors import BadRequest, FailedPrecondition, NotFound
from gateway.core.types import FRAMEWORKS, Framework, InferRequest, ServerKind
from gateway.edge.limits import check_tensors
from gateway.edge.security_settings import LimitsSettings
from trainers.manifest import Manifest, load_manifest

SERVING_SIGNATURE = "serving_default"
"""The one signature both exports carry (TF Serving's default key)."""


def routed(served: Mapping[str, Iterable[int]]) -> int | None:
    """The `latest` rule on its own: given the versions each framework serves, the newest
    version every framework serves, else the newest any serves, else None.

    >>> routed({"tensorflow": [1, 2, 3], "pytorch": [1, 2]})
    2
    """
    sets = [set(versions) for versions in served.values()]
    common = set.intersection(*sets) if sets else set()
    if common:
        return max(common)
    anywhere = set().union(*sets)
    return max(anywhere) if anywhere else None


@dataclass(frozen=True)
class TensorInfo:
    """One named tensor of a signature; `shape[0]` is the batch dimension (-1)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """One model: its versions (and which frameworks export each, or, when followed, serve
    each), its signature, and its TF Serving version labels (label -> version, from the
    gateway config). `followed` is True when `versions` comes from the backends."""

    name: str
    versions: dict[int, tuple[Framework, ...]]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    labels: Mapping[str, int] = field(default_factory=dict)
    followed: bool = False
    on_servers: Mapping[tuple[Framework, ServerKind], frozenset[int]] = field(default_factory=dict)

    def serves_on(self, framework: Framework, server: ServerKind, version: int) -> bool:
        """Whether `server` serves `framework`'s build of `version` (`on_servers`; a pair
        it does not hold: whether the framework does)."""
        known = self.on_servers.get((framework, server))
        return framework in self.versions.get(version, ()) if known is None else version in known

    @cached_property
    def latest(self) -> int:
        """The version a request naming none gets: the newest both frameworks serve, else
        the newest any serves (see the module's docstring).

        Raises:
            NotFound: no version of the model is served at all.
        """
        if not self.followed:  # the manifest's record alone: its newest version, as before
            return max(self.versions)
        version = routed({arm: self.served(arm) for arm in FRAMEWORKS})
        if version is None:
            raise NotFound(f"no backend serves any version of model {self.name} now")
        return version

    def latest_for(self, arm: Framework | None) -> int:
        """`latest`, unless `arm` (a client's pinned framework) does not serve it: then the
        newest version `arm` serves (or `latest`, whose 404 names the missing build)."""
        latest = self.latest
        if arm is None or arm in self.versions.get(latest, ()):
            return latest
        own = [v for v, arms in self.versions.items() if arm in arms]
        return max(own) if own else latest

    def served(self, arm: Framework) -> tuple[int, ...]:
        """The versions `arm` serves (exports, when not followed), oldest first."""
        return tuple(sorted(v for v, arms in self.versions.items() if arm in arms))

    @cached_property
    def input_specs(self) -> Mapping[str, TensorInfo]:
        """The inputs by name (built once: `validate` reads it on every request)."""
        return {t.name: t for t in self.inputs}

    @cached_property
    def output_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.outputs)

    def resolve_version(
        self, version: int | None, label: str | None, pinned: Framework | None = None
    ) -> int:
        """A concrete version: the given one, the one a configured label names, or the latest
        (`latest_for(pinned)`).

        Raises:
            BadRequest: an unknown label, in TF Serving's words (its `ServerCore`
                answers INVALID_ARGUMENT "Unrecognized servable version label: <label>").
            NotFound: a version the model does not have.
        """
        if label is not None:
            if label not in self.labels:
                raise BadRequest(f"Unrecognized servable version label: {label}")
            return self.labels[label]
        if version is None:
            return self.latest_for(pinned)
        if version not in self.versions:
            raise NotFound(f"model {self.name} has no version {version}")
        return version

    def check_arm_versions(self, arm_versions: Mapping[Framework, int]) -> None:
        """A policy's `arm_versions` must name builds the model store has.

        Raises:
            BadRequest: naming the arm and the version missing.
        """
        for arm, version in arm_versions.items():
            if arm not in self.versions.get(version, ()):
                raise BadRequest(
                    f"arm_versions.{arm}: model {self.name} has no {arm} build of version {version}"
                )

    def check_arms(self, arms: Mapping[str, Arm]) -> None:
        """A policy's named arms (`gateway.core.arms.Arm`) that name a version must name
        builds the model store has.

        Raises:
            BadRequest: naming the arm, its framework and the version missing.
        """
        for name, arm in arms.items():
            version = arm.version
            if version is not None and arm.framework not in self.versions.get(version, ()):
                raise BadRequest(
                    f"arms.{name}: model {self.name} has no {arm.framework} build of"
                    f" version {version}"
                )


Refresh = Callable[[str], Awaitable[bool]]
"""Asks the follower to look at a model's backends now; True when its `ModelInfo` changed."""


class Catalog:
    """Models by name: built from the manifest at start-up, then (with a follower attached)
    replaced model by model as the manifest and the backends change.

    Readers take one `get` per request and keep that `ModelInfo`: a version switch never
    changes a request already routed (its in-flight call finishes on the version it chose).
    """

    def __init__(self, models: dict[str, ModelInfo]) -> None:
        self._models = models
        self._refresh: Refresh | None = None
        self._since: dict[str, float] = {}

    def update(self, info: ModelInfo, at: float) -> bool:
        """Replace `info.name`'s entry (one assignment); `at` (epoch seconds) becomes
        `since(model)` when the routed version changed. Returns whether anything changed."""
        old = self._models.get(info.name)
        if old == info:
            return False
        if old is None or _routed(old) != _routed(info):
            self._since[info.name] = at
        self._models = {**self._models, info.name: info}
        return True

    def attach(self, refresh: Refresh) -> None:
        """The follower's on-demand look (see `refresh`)."""
        self._refresh = refresh

    async def refresh(self, model: str) -> bool:
        """Look at `model`'s backends now (after a backend said a version is not found);
        True when that changed the catalog. Without a follower: False."""
        if self._refresh is None:
            return False
        return await self._refresh(model)

    def routed(self, model: str) -> int | None:
        """The version requests naming none get now (None: no version is served)."""
        return _routed(self.get(model))

    def since(self, model: str) -> float | None:
        """When (epoch seconds) `routed(model)` last changed; None when never followed."""
        return self._since.get(model)

    def serves(self, model: str, arm: Framework) -> bool:
        """Whether `arm`'s backend serves some version of `model` (readiness)."""
        return bool(self.get(model).served(arm))

    def served(self, model: str) -> dict[Framework, tuple[int, ...]]:
        """Per framework, the versions of `model` its backend serves, oldest first."""
        info = self.get(model)
        return {arm: info.served(arm) for arm in FRAMEWORKS}

    @classmethod
    def from_store(
        cls,
        store: Path,
        limits: LimitsSettings | None = None,
        version_labels: Mapping[str, Mapping[str, int]] | None = None,
    ) -> Catalog:
        return cls.from_manifest(load_manifest(store), limits, version_labels)

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        limits: LimitsSettings | None = None,
        version_labels: Mapping[str, Mapping[str, int]] | None = None,
    ) -> Catalog:
        """The manifest's models, with request `limits` and `version_labels` (model ->
        label -> version).

        Raises:
            ValueError: a label of a model the manifest lacks, or naming a version the
                model does not have (TF Serving refuses such a model config too).
        """
        labels = dict(version_labels or {})
        models = {}
        for name, entry in manifest.models.items():
            if not entry.versions:
                continue
            latest = entry.versions[str(entry.latest)]
            models[name] = ModelInfo(
                name=name,
                versions={int(v): tuple(e.frameworks) for v, e in entry.versions.items()},
                inputs=tuple(_tensor(t.name, t.dtype, t.shape) for t in latest.signature.inputs),
                outputs=tuple(_tensor(t.name, t.dtype, t.shape) for t in latest.signature.outputs),
                limits=limits or LimitsSettings(),
                labels=dict(labels.pop(name, {})),
                on_servers={
                    ("pytorch", "oip"): frozenset(
                        int(v) for v, e in entry.versions.items()
                        if (torch := e.frameworks.get("pytorch")) is not None and torch.pt2
                    )
                },
            )  # fmt: skip
        if labels:
            raise ValueError(f"version_labels name models not in the model store: {sorted(labels)}")
        for info in models.values():
            _check_labels(info)
        return cls(models)

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, model: str) -> ModelInfo:
        try:
            return self._models[model]
        except KeyError:
            raise NotFound(f"unknown model '{model}'") from None


def _routed(info: ModelInfo) -> int | None:
    try:
        return info.latest
    except NotFound:
        return None


def _check_labels(info: ModelInfo) -> None:
    for label, version in info.labels.items():
        if version not in info.versions:
            raise ValueError(
                f"version label '{label}' of model {info.name} names version {version}, "
                f"which the model store does not have (it has {sorted(info.versions)})"
            )


def _tensor(name: str, dtype: str, shape: list[int]) -> TensorInfo:
    return TensorInfo(name, np.dtype(dtype), tuple(shape))


def validate(request: InferRequest, info: ModelInfo, strict_dtype: bool) -> None:
    """Check names, dtypes and shapes in place; JSON numbers are cast unless `strict_dtype`.

    `strict_dtype` is for protocols that state a dtype (OIP `datatype`, TensorProto):
    there a mismatch is the client's error, as in Triton and TF Serving.
    """
    signature = request.parameters.get("signature_name")
    if signature not in (None, "", SERVING_SIGNATURE):
        # both exports carry one signature; TF Serving's words and code for any other
        raise FailedPrecondition(f'Serving signature key "{signature}" not found.')
    check_tensors(request, info.limits)  # batch size and values per tensor (gateway.edge.limits)
    expected = info.input_specs
    if request.inputs.keys() != expected.keys():
        _name_mismatch(request, info)
    for name, spec in expected.items():
        request.inputs[name] = _conform(request.inputs[name], spec, strict_dtype)
    known_outputs = info.output_names
    for output in request.outputs:
        if output not in known_outputs:
            raise BadRequest(
                f"unknown output '{output}'; {info.name} returns {sorted(known_outputs)}"
            )


def _name_mismatch(request: InferRequest, info: ModelInfo) -> None:
    expected = info.input_specs
    unknown = sorted(set(request.inputs) - set(expected))
    if unknown:
        raise BadRequest(f"unknown input '{unknown[0]}'; {info.name} takes {_names(expected)}")
    missing = sorted(set(expected) - set(request.inputs))
    raise BadRequest(f"missing input '{missing[0]}'; {info.name} takes {_names(expected)}")


def _conform(array: np.ndarray, spec: TensorInfo, strict_dtype: bool) -> np.ndarray:
    if array.dtype != spec.dtype:
        castable = array.dtype.kind in "iuf" and spec.dtype.kind in "iuf"
        if strict_dtype or not castable:
            raise BadRequest(
                f"input '{spec.name}': expected dtype {spec.dtype.name}, got {_dtype_name(array)}"
            )
        array = array.astype(spec.dtype)
    if array.ndim != len(spec.shape) or array.shape[1:] != spec.shape[1:] or array.shape[0] < 1:
        raise BadRequest(
            f"input '{spec.name}': expected shape {list(spec.shape)}, got {list(array.shape)}"
        )
    return array


def _dtype_name(array: np.ndarray) -> str:
    return {"U": "string", "S": "bytes", "O": "object", "b": "bool"}.get(
        array.dtype.kind, array.dtype.name
    )


def _names(expected: Mapping[str, TensorInfo]) -> str:
    return ", ".join(f"'{n}'" for n in sorted(expected))
