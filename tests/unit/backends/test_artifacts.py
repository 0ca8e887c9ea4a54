"""Artifacts are verified against the manifest's sha256 before a backend loads them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.artifacts import verify_archives, verify_savedmodels
from backends.process import LaunchError
from backends.torchserve.config import ModelArchive
from dualserve.cli import app
from tests.unit.gateway.gateway_fakes import make_store
from trainers.manifest import load_manifest, write_manifest
from trainers.store import sha256_path


def _store(root: Path) -> Path:
    """A store with version 1 of `toy`: a SavedModel directory and a .mar, both recorded."""
    make_store(root, versions=(1,))
    saved = root / "tensorflow" / "toy" / "1"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(b"weights")
    mar = root / "torchserve" / "toy.v1.mar"
    mar.parent.mkdir()
    with zipfile.ZipFile(mar, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", '{"model": {"modelVersion": "1"}}')
        archive.writestr("handler.py", "print('serving')\n")
    manifest = load_manifest(root)
    frameworks = manifest.models["toy"].versions["1"].frameworks
    frameworks["tensorflow"].sha256 = sha256_path(saved)
    frameworks["pytorch"].mar = "torchserve/toy.v1.mar"
    frameworks["pytorch"].mar_sha256 = sha256_path(mar)
    write_manifest(root, manifest)
    return root


ARCHIVE = ModelArchive(name="toy", mar="toy.v1.mar", version="1")


def test_recorded_artifacts_pass(tmp_path: Path) -> None:
    store = _store(tmp_path)
    verify_savedmodels(store, ["toy"])
    verify_archives(store, [ARCHIVE])


def test_a_tampered_savedmodel_is_refused_by_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "tensorflow" / "toy" / "1" / "variables" / "extra.txt").write_text("x")
    with pytest.raises(LaunchError, match=r"tensorflow/toy/1 does not match the sha256"):
        verify_savedmodels(store, ["toy"])


def test_a_tampered_mar_is_refused_by_name(tmp_path: Path) -> None:
    store = _store(tmp_path)
    mar = store / "torchserve" / "toy.v1.mar"
    with zipfile.ZipFile(mar, "a") as archive:
        archive.writestr("evil.py", "import os\n")
    with pytest.raises(LaunchError, match=r"torchserve/toy.v1.mar does not match the sha256"):
        verify_archives(store, [ARCHIVE])


def test_an_unrecorded_newest_version_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store / "tensorflow" / "toy" / "7").mkdir()  # TF Serving would serve the highest
    with pytest.raises(LaunchError, match=r"tensorflow/toy/7 is not recorded"):
        verify_savedmodels(store, ["toy"])
    with pytest.raises(LaunchError, match="is not recorded"):
        verify_archives(store, [ModelArchive(name="toy", mar="toy.v1.mar", version="2")])


def test_dualserve_up_refuses_tampered_artifacts_before_starting_anything(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path / "store")
    (store / "tensorflow" / "toy" / "1" / "saved_model.pb").write_bytes(b"other graph")
    latest = store / "torchserve" / "toy.mar"
    latest.write_bytes((store / "torchserve" / "toy.v1.mar").read_bytes())
    with zipfile.ZipFile(latest, "a") as archive:
        archive.writestr("evil.py", "import os\n")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["up", "--model-store", str(store), "--run-dir", str(run_dir)])
    assert result.exit_code == 1, result.output
    assert "tensorflow/toy/1 does not match the sha256" in " ".join(result.output.split())
    assert not list(run_dir.rglob("*.pid"))
