"""Verify model artifacts against the manifest's sha256 before a backend loads them.

A SavedModel or a `.mar` is code as much as data: a `.mar` carries a Python handler that
TorchServe executes, a SavedModel a graph TF runs. The trainers record each artifact's
sha256 in `manifest.json` (`trainers.store.sha256_path`: a file's bytes, or a directory's
relative names and contents in sorted order); the launchers call these checks before they
start a server, so `dualserve up` refuses a tampered or unrecorded artifact with a message
naming the file.

What is checked is what the server would load at start: the version TF Serving picks (its
default policy serves the highest numeric version directory) and the archives TorchServe
is told to load. Versions written later, while the server runs and polls its store, are
not checked here (they come from the trainers, which record them).
"""

from __future__ import annotations

from pathlib import Path

from backends.process import LaunchError
from backends.torchserve.config import ModelArchive
from trainers.errors import ManifestError
from trainers.manifest import Framework, FrameworkArtifact, Manifest, load_manifest
from trainers.store import sha256_path


def verify_savedmodels(model_store: Path, models: list[str]) -> None:
    """Check the SavedModel TF Serving will load for each of `models` (its highest
    numeric version directory) against the manifest.

    Raises:
        LaunchError: naming the directory that is unrecorded or does not match.
    """
    manifest = _manifest(model_store)
    for model in models:
        base = Path(model_store) / "tensorflow" / model
        versions = sorted(int(p.name) for p in base.glob("*") if p.name.isdigit() and p.is_dir())
        if not versions:
            continue  # the launcher reports a model without versions itself
        path = base / str(versions[-1])
        artifact = _recorded(manifest, model, str(versions[-1]), "tensorflow")
        if artifact is None:
            raise _unrecorded(path, model_store)
        _check(path, artifact.sha256, model_store)


def verify_archives(model_store: Path, archives: list[ModelArchive]) -> None:
    """Check every `.mar` TorchServe is told to load against the `mar_sha256` recorded
    for the version the archive holds.

    Raises:
        LaunchError: naming the archive that is unrecorded or does not match.
    """
    manifest = _manifest(model_store)
    for archive in archives:
        path = Path(model_store) / "torchserve" / archive.mar
        artifact = _recorded(manifest, archive.name, archive.version, "pytorch")
        if artifact is None or artifact.mar_sha256 is None:
            raise _unrecorded(path, model_store)
        _check(path, artifact.mar_sha256, model_store)


def _manifest(model_store: Path) -> Manifest:
    try:
        return load_manifest(model_store)
    except ManifestError as exc:
        raise LaunchError(str(exc)) from exc


def _recorded(
    manifest: Manifest, model: str, version: str, framework: Framework
) -> FrameworkArtifact | None:
    entry = manifest.models.get(model)
    found = entry.versions.get(version) if entry else None
    return found.frameworks.get(framework) if found else None


def _check(path: Path, expected: str, model_store: Path) -> None:
    actual = sha256_path(path)
    if actual != expected:
        raise LaunchError(
            f"{path} does not match the sha256 recorded in {model_store}/manifest.json"
            f" (recorded {expected[:12]}..., found {actual[:12]}...); refusing to load it."
            " Retrain, or restore the artifact the trainers wrote."
        )


def _unrecorded(path: Path, model_store: Path) -> LaunchError:
    return LaunchError(
        f"{path} is not recorded in {model_store}/manifest.json, so it cannot be verified;"
        " refusing to load it (artifacts come from `python -m trainers`, which records them)"
    )
