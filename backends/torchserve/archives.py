"""Which .mar archives a TorchServe run loads, read from the model store.

The manifest says which models have a PyTorch export; the archive itself says which
version it holds (`MAR-INF/MANIFEST.json`), and that is the version TorchServe registers.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from backends.process import LaunchError
from backends.torchserve.config import ModelArchive
from trainers.errors import ManifestError
from trainers.manifest import Manifest, load_manifest

MAR_DIR = "torchserve"


def mar_dir(model_store: Path) -> Path:
    """Where the trainers put the .mar files: `<store>/torchserve/`."""
    return Path(model_store) / MAR_DIR


def find_archives(
    model_store: Path, models: list[str] | None, serve_versions: str
) -> list[ModelArchive]:
    """The archives to load: every (or the named) model with a PyTorch export."""
    manifest = _manifest(model_store)
    names = models if models is not None else _pytorch_models(manifest, model_store)
    if not names:
        raise LaunchError(f"no model in {model_store} has a TorchServe archive; train one first")
    archives: list[ModelArchive] = []
    for name in names:
        if name not in manifest.models:
            raise LaunchError(f"model '{name}' is not in {model_store}/manifest.json")
        if serve_versions == "all":
            archives += _all_versions(model_store, manifest, name)
        else:
            archives.append(_latest(model_store, name))
    return archives


def _manifest(model_store: Path) -> Manifest:
    try:
        return load_manifest(model_store)
    except ManifestError as exc:
        raise LaunchError(str(exc)) from exc


def _pytorch_models(manifest: Manifest, model_store: Path) -> list[str]:
    return [
        name
        for name, entry in sorted(manifest.models.items())
        if any("pytorch" in v.frameworks for v in entry.versions.values())
        and (mar_dir(model_store) / f"{name}.mar").is_file()
    ]


def _latest(model_store: Path, name: str) -> ModelArchive:
    path = mar_dir(model_store) / f"{name}.mar"
    if not path.is_file():
        raise LaunchError(f"model '{name}' has no TorchServe archive at {path}")
    return ModelArchive(name=name, mar=path.name, version=mar_version(path))


def _all_versions(model_store: Path, manifest: Manifest, name: str) -> list[ModelArchive]:
    versions = sorted(
        int(v)
        for v, entry in manifest.models[name].versions.items()
        if "pytorch" in entry.frameworks
    )
    files = [mar_dir(model_store) / f"{name}.v{v}.mar" for v in versions]
    present = [path for path in files if path.is_file()]
    if not present:
        raise LaunchError(f"model '{name}' has no versioned archives in {mar_dir(model_store)}")
    # TorchServe makes the first registered version the default (the `defaultVersion`
    # flag in `models` is not honoured for load_models), so the newest goes first.
    newest_first = present[::-1]
    return [
        ModelArchive(name=name, mar=p.name, version=mar_version(p), default=i == 0)
        for i, p in enumerate(newest_first)
    ]


def mar_version(path: Path) -> str:
    """The model version recorded inside a .mar by torch-model-archiver."""
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        return str(manifest["model"]["modelVersion"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise LaunchError(f"{path} is not a readable .mar archive: {exc}") from exc
