"""The model store manifest: the single record of every model, version and artifact.

Read by everyone later (backends, gateway, load tests), written only by the trainers,
always atomically (temp file + rename) and under the store's lock.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainers.errors import ManifestError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
Framework = Literal["tensorflow", "pytorch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    """A named tensor; -1 in `shape` is the batch dimension."""

    name: str
    dtype: str
    shape: list[int]


class Signature(_Strict):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class DatasetInfo(_Strict):
    name: str
    fingerprint: str = Field(description="sha256 over the split arrays, in order")
    train: int
    val: int
    test: int
    mean: float = Field(description="scalar pixel mean of the training split, baked into models")
    std: float


class Hyperparameters(_Strict):
    epochs: int
    batch_size: int
    lr: float
    seed: int
    optimizer: str = "adam"
    loss: str = "sparse_categorical_crossentropy"


class ExportParity(_Strict):
    """An export's outputs against the TorchScript export's, over the whole test set."""

    examples: int
    max_abs_prob_diff: float
    classes_equal: bool
    tolerance: float


class TorchExport(_Strict):
    """A `torch.export` artifact beside the TorchScript file (`trainers/exports/torch_export.py`):
    `exported_program` (`torch.export.save`, dynamic batch) or `aoti_package`
    (AOTInductor, compiled for `device`). Load only after checking `sha256`."""

    kind: Literal["exported_program", "aoti_package"]
    artifact: str
    sha256: str
    size_bytes: int
    device: str = Field(description="cpu for the program; the compile device of a package")
    parity: ExportParity


class FrameworkArtifact(_Strict):
    """One framework's export of one version; paths are relative to the store root."""

    artifact: str
    sha256: str
    size_bytes: int
    mar: str | None = None
    mar_sha256: str | None = None
    pt2: TorchExport | None = None
    aoti: TorchExport | None = None
    test_accuracy: float
    train_seconds: float
    param_count: int
    framework_version: str
    device: str
    latency_ms: dict[str, float] = Field(default_factory=dict)


class Agreement(_Strict):
    top1: float = Field(description="share of test examples with equal top-1 class")
    max_abs_prob_diff: float


class VersionEntry(_Strict):
    version: int
    created: str
    arch: str
    dataset: DatasetInfo
    classes: list[int]
    signature: Signature
    hyperparameters: Hyperparameters
    frameworks: dict[Framework, FrameworkArtifact]
    agreement: Agreement | None = None
    report: str | None = None


class ModelEntry(_Strict):
    versions: dict[str, VersionEntry] = Field(default_factory=dict)

    @property
    def latest(self) -> int | None:
        return max((int(v) for v in self.versions), default=None)


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    models: dict[str, ModelEntry] = Field(default_factory=dict)


def manifest_path(store: Path) -> Path:
    return Path(store) / MANIFEST_NAME


def load_manifest(store: Path) -> Manifest:
    """Read the manifest; a missing or corrupt one is an error, never an empty store."""
    path = manifest_path(store)
    if not path.is_file():
        raise ManifestError(f"{path} does not exist; train a model first (python -m trainers)")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ManifestError(f"{path} is corrupt: {where}: {first['msg']}") from exc


def load_or_create_manifest(store: Path, has_artifacts: bool) -> Manifest:
    """Open the manifest for a new training run.

    A missing manifest is only created afresh when the store holds no artifacts:
    otherwise versions would be forgotten, so the user is told instead.
    """
    if manifest_path(store).is_file():
        return load_manifest(store)
    if has_artifacts:
        raise ManifestError(
            f"{manifest_path(store)} is missing but {store} holds model artifacts; "
            "restore the manifest or move the artifacts away (it is never rebuilt silently)"
        )
    return Manifest()


def write_manifest(store: Path, manifest: Manifest) -> None:
    """Write atomically: readers see the old or the new manifest, never half of one."""
    path = manifest_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(manifest.model_dump_json(indent=2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def manifest_json_schema() -> str:
    """The JSON Schema committed as model_store/manifest.schema.json."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"
