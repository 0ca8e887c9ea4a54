"""Arms: the named (framework, version) pairs a routing policy and an experiment split
traffic between (issue 22). KServe's `canary`, Seldon's `candidates` and SageMaker's
production variants name their arms the same way; here an arm also says which
framework serves it, so two arms may differ by framework, by version, or both.

An arm may name its server too (issue 29): `torch-ts` (pytorch on TorchServe) and
`torch-pt2` (pytorch's `.pt2` export on an Open Inference Protocol server) are two arms of
one experiment. An arm that names none calls its framework's configured server
(`GatewaySettings.servers`, else TF Serving / TorchServe).

An arm that names no version follows `latest` (the newest version both frameworks serve,
`gateway.catalog`). A config that names no arms has the two arms of before issue 22,
named `tensorflow` and `pytorch`, following `latest` (or the old `arm_versions`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.core.types import FRAMEWORKS, Framework, ServerKind

ARM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ARM_SERVERS: dict[Framework, tuple[ServerKind, ...]] = {
    "tensorflow": ("tfserving",),
    "pytorch": ("torchserve", "oip"),
}
"""The servers an arm of each framework may name: TF Serving serves tensorflow's
SavedModel, TorchServe pytorch's TorchScript, the OIP server pytorch's `.pt2` export."""


class Arm(BaseModel):
    """One arm: the framework that answers it and the version it serves.

    Attributes:
        framework: `tensorflow` or `pytorch`.
        version: a model version (>= 1), or None: the arm follows `latest`.
        server: the server that answers it (`ARM_SERVERS`), or None: its framework's
            configured server (`GatewaySettings.server_of`).

    Raises:
        ValueError (a validation error, 400 from the APIs): a server that does not
            serve the arm's framework.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: Framework
    version: int | None = Field(None, ge=1, description="None = follows `latest`")
    server: ServerKind | None = Field(
        None, description="tfserving, torchserve or oip; None = the framework's configured one"
    )

    @model_validator(mode="after")
    def _server_serves_framework(self) -> Arm:
        allowed = ARM_SERVERS[self.framework]
        if self.server is not None and self.server not in allowed:
            raise ValueError(
                f"server {self.server} does not serve {self.framework} arms"
                f" (one of {', '.join(allowed)})"
            )
        return self

    def label(self) -> str:
        """`tensorflow v2`, `pytorch latest`, or `pytorch on oip latest`."""
        on = f" on {self.server}" if self.server is not None else ""
        return f"{self.framework}{on} {'latest' if self.version is None else f'v{self.version}'}"


def framework_arms(versions: Mapping[str, int] | None = None) -> dict[str, Arm]:
    """The two arms of a config that names none: one per framework, named by it,
    following `latest` unless `versions` (the old `arm_versions`) pins one."""
    versions = versions or {}
    return {fw: Arm(framework=fw, version=versions.get(fw)) for fw in FRAMEWORKS}


def check_names(names: Iterable[str], where: str) -> None:
    """Arm names are 1-64 of `A-Za-z0-9_.-` (they travel in headers and log columns).

    Raises:
        ValueError: a name that is not, naming `where`.
    """
    for name in names:
        if not ARM_NAME.match(name):
            raise ValueError(f"{where}: arm name {name!r} must be 1-64 of A-Za-z0-9_.-")


def check_weights(weights: Mapping[str, float], arms: Mapping[str, Arm], where: str) -> None:
    """Weights name known arms, are non-negative and not all zero.

    Raises:
        ValueError: naming `where` and the known arms.
    """
    unknown = sorted(set(weights) - set(arms))
    if unknown:
        raise ValueError(f"{where} names {', '.join(unknown)}: no such arm ({known(arms)})")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"{where} must be non-negative and not all zero")


def known(arms: Iterable[str]) -> str:
    """`known arms: a, b, c` (sorted), for error sentences."""
    return "known arms: " + ", ".join(sorted(arms))


def even_weights(arms: Iterable[str]) -> dict[str, float]:
    """Equal shares summing to 100 (50/50 for two arms, as before issue 22)."""
    names = list(arms)
    return {name: 100.0 / len(names) for name in names} if names else {}


def name_of(
    arms: Mapping[str, Arm], framework: str, version: int | None, server: str | None = None
) -> str:
    """The arm serving `framework` at `version` (an arm pinned to it, else one of that
    framework following `latest`), else the framework's name: what a failover or a
    shadow call to that framework is logged as. With `server` (the server called), an
    arm naming another server is not it."""
    fits = {n: a for n, a in arms.items() if server is None or a.server in (None, server)}
    pinned = [n for n, a in fits.items() if a.framework == framework and a.version == version]
    follows = [n for n, a in fits.items() if a.framework == framework and a.version is None]
    return (pinned or follows or [framework])[0]


def legacy_arm_list(items: list[Any]) -> dict[str, Any]:
    """The older experiment form, `arms: [control, candidate]` (one per framework), as
    named arms: each named by its framework (the older `split` keys)."""
    named: dict[str, Any] = {}
    for item in items:
        data = _arm_data(item)
        framework = str(data.get("framework"))
        if framework in named:
            raise ValueError("arms: a list of arms has one arm per framework; name them instead")
        named[framework] = data
    return named


def _arm_data(item: Any) -> dict[str, Any]:
    if isinstance(item, BaseModel):
        return item.model_dump()
    if not isinstance(item, dict):
        raise ValueError("arms: each arm is {framework, version}")
    return dict(item)


def legacy_role(value: Any, arms: Mapping[str, Any]) -> Any:
    """An older `control`/`candidate` given as an arm (`{framework, version}`): the name
    of that arm in `arms` (by framework); a name is returned as it is."""
    if isinstance(value, str) or value is None:
        return value
    data = _arm_data(value)
    framework = str(data.get("framework"))
    if framework not in arms:
        arms[framework] = data  # type: ignore[index]
    return framework
