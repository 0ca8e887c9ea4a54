"""The manifest: atomic writes, clear errors, no silent overwrite, schema in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.errors import ManifestError
from trainers.manifest import (
    Manifest,
    ModelEntry,
    load_manifest,
    load_or_create_manifest,
    manifest_json_schema,
    write_manifest,
)
from trainers.store import ModelStore

REPO = Path(__file__).resolve().parents[3]


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    manifest = Manifest(models={"digits-mlp": ModelEntry()})
    write_manifest(tmp_path, manifest)
    assert load_manifest(tmp_path) == manifest
    assert not list(tmp_path.glob(".manifest-*")), "temporary file left behind"


def test_corrupt_manifest_is_reported_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"models": {"m": {"versions": 3}}}')
    with pytest.raises(ManifestError, match=r"manifest.json is corrupt: models.m.versions"):
        load_or_create_manifest(tmp_path, has_artifacts=False)
    assert (tmp_path / "manifest.json").read_text() == '{"models": {"m": {"versions": 3}}}'


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is corrupt"):
        load_manifest(tmp_path)


def test_missing_manifest_with_artifacts_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "tensorflow" / "digits-mlp" / "1").mkdir(parents=True)
    store = ModelStore(tmp_path)
    assert store.has_artifacts()
    with pytest.raises(ManifestError, match=r"missing but .* holds model artifacts"):
        load_or_create_manifest(tmp_path, store.has_artifacts())


def test_missing_manifest_in_empty_store_starts_fresh(tmp_path: Path) -> None:
    assert load_or_create_manifest(tmp_path, has_artifacts=False) == Manifest()
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path)


def test_next_version_skips_versions_on_disk(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.next_version(Manifest(), "digits-mlp") == 1
    (tmp_path / "torch" / "digits-mlp" / "4").mkdir(parents=True)
    assert store.next_version(Manifest(), "digits-mlp") == 5
    assert store.next_version(Manifest(), "digits-cnn") == 1


def test_committed_schema_matches_the_model() -> None:
    committed = (REPO / "model_store" / "manifest.schema.json").read_text()
    assert committed == manifest_json_schema(), "run `make schema` and commit the result"
