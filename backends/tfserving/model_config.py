"""TF Serving's model config file (text protobuf `ModelServerConfig`), read and written.

Parsing uses the real `model_server_config_pb2` from `tensorflow-serving-api`, so any file
the real binary accepts is accepted here; the result is a small plain dataclass that the
model manager works with. No TensorFlow import: the launcher writes these files too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as msc

PolicyKind = Literal["latest", "all", "specific"]


class ConfigError(ValueError):
    """The model config file is missing, malformed or names something impossible."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which numeric version directories of a model to serve (TF Serving's default: latest 1)."""

    kind: PolicyKind = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> set[int]:
        """The versions to serve out of those present on disk."""
        present = sorted(set(on_disk))
        if self.kind == "all":
            return set(present)
        if self.kind == "specific":
            return set(present) & set(self.versions)
        return set(present[-self.num_versions :]) if self.num_versions > 0 else set()


@dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry of the model config list."""

    name: str
    base_path: Path
    platform: str = "tensorflow"
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


def parse_model_config(text: str, source: str = "model config") -> list[ModelConfig]:
    """Parse TF Serving's text-format `ModelServerConfig` into model configs."""
    proto = msc.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if proto.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported")
    models = [_from_proto(entry, source) for entry in proto.model_config_list.config]
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: model names must be unique, repeated: {duplicates}")
    return models


def read_model_config(path: Path) -> list[ModelConfig]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model config file {path}: {exc.strerror}") from None
    return parse_model_config(text, str(path))


def _from_proto(entry: msc.ModelConfig, source: str) -> ModelConfig:
    if not entry.name:
        raise ConfigError(f"{source}: a config entry has no name")
    if not entry.base_path:
        raise ConfigError(f"{source}: model {entry.name!r} has no base_path")
    platform = entry.model_platform or "tensorflow"
    if platform != "tensorflow":
        raise ConfigError(f"{source}: model {entry.name!r}: platform {platform!r} unsupported")
    return ModelConfig(
        name=entry.name,
        base_path=Path(entry.base_path),
        platform=platform,
        policy=_policy(entry),
        labels=dict(entry.version_labels),
    )


def _policy(entry: msc.ModelConfig) -> VersionPolicy:
    policy = entry.model_version_policy
    chosen = policy.WhichOneof("policy_choice")
    if chosen == "all":
        return VersionPolicy("all")
    if chosen == "specific":
        return VersionPolicy("specific", versions=tuple(policy.specific.versions))
    if chosen == "latest":
        # num_versions 0 means "unset" in proto3, and TF Serving then serves one.
        return VersionPolicy("latest", num_versions=policy.latest.num_versions or 1)
    return VersionPolicy()


def render_model_config(models: Iterable[ModelConfig]) -> str:
    """The text-format `ModelServerConfig` TF Serving reads for these models."""
    proto = msc.ModelServerConfig()
    for model in models:
        entry = proto.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = str(Path(model.base_path).resolve())
        entry.model_platform = model.platform
        _set_policy(entry, model.policy)
        for label, version in model.labels.items():
            entry.version_labels[label] = version
    return text_format.MessageToString(proto)


def _set_policy(entry: msc.ModelConfig, policy: VersionPolicy) -> None:
    target = entry.model_version_policy
    if policy.kind == "all":
        target.all.SetInParent()
    elif policy.kind == "specific":
        target.specific.versions.extend(policy.versions)
    elif policy.num_versions != 1:
        target.latest.num_versions = policy.num_versions
