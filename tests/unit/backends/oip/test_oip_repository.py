"""The OIP server's repository: which versions load, safely, and how it follows the store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from backends.oip.errors import NotFound, Unavailable
from backends.oip.repository import ModelRepository
from trainers.manifest import (
    DatasetInfo,
    ExportParity,
    FrameworkArtifact,
    Hyperparameters,
    Manifest,
    ModelEntry,
    Signature,
    TensorSpec,
    TorchExport,
    VersionEntry,
    write_manifest,
)

PARITY = ExportParity(examples=1, max_abs_prob_diff=0.0, classes_equal=True, tolerance=1e-5)


def _entry(version: int, artifact: str, sha256: str, pt2: bool = True) -> VersionEntry:
    export = TorchExport(
        kind="exported_program", artifact=artifact, sha256=sha256, size_bytes=1, device="cpu",
        parity=PARITY,
    )  # fmt: skip
    torch = FrameworkArtifact(
        artifact="x.pt", sha256="0", size_bytes=1, test_accuracy=1.0, train_seconds=0.0,
        param_count=1, framework_version="2", device="CPU", pt2=export if pt2 else None,
    )  # fmt: skip
    return VersionEntry(
        version=version, created="now", arch="mlp",
        dataset=DatasetInfo(name="d", fingerprint="f", train=1, val=1, test=1, mean=0, std=1),
        classes=[0, 1],
        signature=Signature(
            inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, 4])],
            outputs=[TensorSpec(name="class", dtype="int64", shape=[-1])],
        ),
        hyperparameters=Hyperparameters(epochs=1, batch_size=1, lr=0.1, seed=0),
        frameworks={"pytorch": torch},
    )  # fmt: skip


def _store(root: Path, versions: dict[int, bytes], pt2: bool = True) -> None:
    entries = {}
    for version, content in versions.items():
        path = root / "torch" / "m" / str(version) / "model.pt2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        entries[str(version)] = _entry(version, f"torch/m/{version}/model.pt2", digest, pt2)
    write_manifest(root, Manifest(models={"m": ModelEntry(versions=entries)}))


def _loaded(path: Path, sha256: str) -> Any:
    return ("module", path.read_bytes())


def test_the_newest_versions_load_and_older_ones_unload(tmp_path: Path) -> None:
    _store(tmp_path, {1: b"a", 2: b"b"})
    repository = ModelRepository(tmp_path, num_versions=2, loader=_loaded)
    assert repository.poll_once()
    assert [(e.version, e.state) for e in repository.index()] == [(1, "READY"), (2, "READY")]
    assert repository.get("m").version == 2 and repository.get("m", 1).module == ("module", b"a")
    assert not repository.poll_once(), "an unchanged manifest is not re-read"
    _store(tmp_path, {1: b"a", 2: b"b", 3: b"c"})
    assert repository.poll_once()
    assert [e.version for e in repository.index()] == [2, 3]
    with pytest.raises(NotFound, match=r"model 'm' has no version 1 \(serves \[2, 3\]\)"):
        repository.get("m", 1)
    with pytest.raises(NotFound, match="unknown model 'x'"):
        repository.get("x")


def test_a_file_that_does_not_match_its_sha256_is_never_unpickled(tmp_path: Path) -> None:
    """The default loader checks the sha256 before torch.export.load reads a byte."""
    _store(tmp_path, {1: b"not a program"})
    (tmp_path / "torch/m/1/model.pt2").write_bytes(b"tampered")
    repository = ModelRepository(tmp_path)
    repository.poll_once()
    [entry] = repository.index()
    assert entry.state == "UNAVAILABLE" and "does not match its recorded sha256" in entry.reason
    with pytest.raises(Unavailable, match=r"version 1 failed to load \(see the repository index\)"):
        repository.get("m", 1)
    assert repository.models() == []


def test_an_artifact_outside_the_store_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "evil.pt2").write_bytes(b"x")
    entry = _entry(1, "../evil.pt2", hashlib.sha256(b"x").hexdigest())
    write_manifest(store, Manifest(models={"m": ModelEntry(versions={"1": entry})}))
    repository = ModelRepository(store, loader=_loaded)
    repository.poll_once()
    [row] = repository.index()
    assert row.state == "UNAVAILABLE" and "lies outside the model store" in row.reason


def test_versions_without_a_program_are_not_served(tmp_path: Path) -> None:
    _store(tmp_path, {1: b"a"}, pt2=False)
    repository = ModelRepository(tmp_path, loader=_loaded)
    repository.poll_once()
    assert repository.index() == [] and repository.models() == []
