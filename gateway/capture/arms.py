"""The one parser of `dualserve replay --arm` specs, and how a spec is asked for.

Today an arm is a framework and an optional version, reached through the gateway pinned:
`X-Backend: <framework>` and the version in the URL (TF Serving's
`/v1/models/{m}/versions/{v}:predict`). Named arms (an `X-Arm` header) would change
`parse_arm` and `ArmTarget.route` only. `ArmTarget.direct_route` reaches the backend
itself instead (`dualserve replay --direct`): TF Serving's REST predict API, TorchServe's
predictions API with its inference key (both take TF Serving's columnar JSON here: the
bundled handler accepts it).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        framework: `tensorflow` or `pytorch`.
        version: a version (>= 1), or None for the one the gateway routes (`latest`).
    """

    framework: Framework
    version: int | None = None

    @property
    def name(self) -> str:
        """The spec as written back: `tensorflow`, `pytorch:2`."""
        return self.framework if self.version is None else f"{self.framework}:{self.version}"

    def route(self, model: str) -> tuple[str, dict[str, str]]:
        """The TF Serving REST path and the headers that pin this arm at the gateway."""
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"/v1/models/{model}{version}:predict", {"X-Backend": self.framework}

    def direct_route(self, model: str, backends: Backends) -> tuple[str, dict[str, str]]:
        """The backend's own URL for this arm, and its headers (TorchServe's key)."""
        if self.framework == "tensorflow":
            version = "" if self.version is None else f"/versions/{self.version}"
            return f"{backends.tensorflow}/v1/models/{model}{version}:predict", {}
        version = "" if self.version is None else f"/{self.version}"
        token = backends.pytorch_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return f"{backends.pytorch}/predictions/{model}{version}", headers


def parse_arm(spec: str) -> ArmTarget:
    """`FRAMEWORK[:VERSION]` (`tensorflow`, `pytorch:2`) as an `ArmTarget`.

    Raises:
        ValueError: an unknown framework or a version that is not a whole number >= 1,
            naming the spec.
    """
    framework, _, version = spec.strip().partition(":")
    if framework not in FRAMEWORKS:
        raise ValueError(
            f"--arm {spec!r}: the framework must be one of {', '.join(FRAMEWORKS)}"
            " (FRAMEWORK[:VERSION], e.g. pytorch:2)"
        )
    if version and not (version.isdigit() and int(version) >= 1):
        raise ValueError(f"--arm {spec!r}: the version must be a whole number >= 1")
    return ArmTarget(framework, int(version) if version else None)  # type: ignore[arg-type]
