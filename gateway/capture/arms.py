"""The one parser of `dualserve replay --arm` specs, and how a spec is asked for.

An arm is a framework and an optional version, reached through the gateway pinned:
`X-Backend: <framework>` and the version in the URL (TF Serving's
`/v1/models/{m}/versions/{v}:predict`); or an arm's NAME from the model's policy
(`torch-pt2`, issue 22/29), pinned with `X-Arm: <name>` (the gateway answers 400 naming the
known arms when the model has no such arm). `ArmTarget.direct_route` reaches the backend
itself instead (`dualserve replay --direct`): TF Serving's REST predict API, TorchServe's
predictions API with its inference key (both take TF Serving's columnar JSON here: the
bundled handler accepts it).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.arms import ARM_NAME
from gateway.core.types import FRAMEWORKS, Framework


@dataclass(frozen=True)
class Backends:
    """Where `--direct` sends: TF Serving's REST base URL, TorchServe's inference base
    URL and its inference key (None: token authorization off)."""

    tensorflow: str
    pytorch: str
    pytorch_token: str | None = None


@dataclass(frozen=True)
class ArmTarget:
    """One arm to replay against.

    Attributes:
        framework: `tensorflow` or `pytorch`; None for a named arm.
        version: a version (>= 1), or None for the one the gateway routes (`latest`).
        arm: an arm's name from the model's policy (pinned with `X-Arm`), else None.
    """

    framework: Framework | None
    version: int | None = None
    arm: str | None = None

    @property
    def name(self) -> str:
        """The spec as written back: `tensorflow`, `pytorch:2`, `torch-pt2`."""
        if self.arm is not None:
            return self.arm
        return str(self.framework) + ("" if self.version is None else f":{self.version}")

    def route(self, model: str) -> tuple[str, dict[str, str]]:
        """The TF Serving REST path and the headers that pin this arm at the gateway:
        `X-Arm` for a named arm (its version is the arm's), else `X-Backend`."""
        if self.arm is not None:
            return f"/v1/models/{model}:predict", {"X-Arm": self.arm}
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"/v1/models/{model}{version}:predict", {"X-Backend": str(self.framework)}

    def direct_route(self, model: str, backends: Backends) -> tuple[str, dict[str, str]]:
        """The backend's own URL for this arm, and its headers (TorchServe's key).

        Raises:
            ValueError: a named arm (only the gateway knows what it names).
        """
        if self.framework is None:
            raise ValueError(
                f"--arm {self.name!r}: --direct needs FRAMEWORK[:VERSION]; an arm's name"
                " is the gateway's to resolve"
            )
        if self.framework == "tensorflow":
            version = "" if self.version is None else f"/versions/{self.version}"
            return f"{backends.tensorflow}/v1/models/{model}{version}:predict", {}
        version = "" if self.version is None else f"/{self.version}"
        token = backends.pytorch_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return f"{backends.pytorch}/predictions/{model}{version}", headers


def parse_arm(spec: str) -> ArmTarget:
    """`FRAMEWORK[:VERSION]` (`tensorflow`, `pytorch:2`), or an arm's NAME (`torch-pt2`:
    1-64 of `A-Za-z0-9_.-`, not a framework's name) as an `ArmTarget`.

    Raises:
        ValueError: an unknown framework with a version, a version that is not a whole
            number >= 1, or a name with other characters, naming the spec.
    """
    framework, colon, version = spec.strip().partition(":")
    if framework not in FRAMEWORKS:
        if not colon and ARM_NAME.match(framework):
            return ArmTarget(None, None, framework)
        raise ValueError(
            f"--arm {spec!r}: the framework must be one of {', '.join(FRAMEWORKS)}"
            " (FRAMEWORK[:VERSION], e.g. pytorch:2), or an arm's name (1-64 of A-Za-z0-9_.-)"
        )
    if version and not (version.isdigit() and int(version) >= 1):
        raise ValueError(f"--arm {spec!r}: the version must be a whole number >= 1")
    return ArmTarget(framework, int(version) if version else None)  # type: ignore[arg-type]
