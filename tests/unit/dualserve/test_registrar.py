"""The registrar registers with TorchServe what TF Serving serves (checked archives only),
moves TorchServe's default to the newest version, and records who serves what since when."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.torchserve.config import TorchServeSettings
from backends.torchserve.management import VersionState
from dualserve import registrar as registrar_module
from dualserve.registrar import Backends, Registrar
from gateway.catalog import routed
from tests.unit.gateway.gateway_fakes import make_store
from trainers.manifest import load_manifest, write_manifest
from trainers.store import sha256_path


class FakeTorchServe:
    def __init__(self, ready: set[int]) -> None:
        self.ready = set(ready)
        self.default: int | None = max(ready) if ready else None
        self.registered: list[tuple[str, str]] = []

    def versions(self, model: str) -> list[VersionState]:
        return [VersionState(v, True) for v in sorted(self.ready)]

    def default_version(self, model: str) -> int | None:
        return self.default

    def set_default(self, model: str, version: int) -> None:
        self.default = version

    def register(self, model: str, mar: str, settings: TorchServeSettings) -> None:
        self.registered.append((model, mar))
        self.ready.add(int(mar.split(".v")[1].split(".")[0]))


def _store(tmp_path: Path, tamper: bool = False) -> Path:
    store = make_store(tmp_path, (1, 2))
    manifest = load_manifest(store)
    (store / "torchserve").mkdir()
    for version, entry in manifest.models["toy"].versions.items():
        mar = store / "torchserve" / f"toy.v{version}.mar"
        mar.write_bytes(b"archive " + version.encode())
        entry.frameworks["pytorch"].mar = f"torchserve/{mar.name}"
        entry.frameworks["pytorch"].mar_sha256 = sha256_path(mar)
    write_manifest(store, manifest)
    if tamper:
        (store / "torchserve" / "toy.v2.mar").write_bytes(b"something else")
    return store


def _registrar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tf: set[int], torch: FakeTorchServe, **kw: bool
) -> Registrar:
    monkeypatch.setattr(registrar_module, "tf_versions", lambda rest, model: set(tf))
    times = iter(range(1000, 2000))
    return Registrar(
        _store(tmp_path, **kw),
        Backends("http://tf", torch),  # type: ignore[arg-type]
        tmp_path / "run" / "models.json",
        clock=lambda: next(times),
    )


def test_a_version_tf_serving_serves_is_registered_and_made_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = FakeTorchServe({1})
    registrar = _registrar(tmp_path, monkeypatch, {1, 2}, torch)
    registrar.step()
    assert torch.registered == [("toy", "toy.v2.mar")]
    assert torch.default == 2
    written = json.loads((tmp_path / "run" / "models.json").read_text())
    assert written == registrar.record
    record = registrar.record["toy"]
    assert record["routed"] == 2 and record["routed_since"] == 1000
    assert record["pytorch"]["served"] == [1, 2]
    registrar.step()  # nothing new: nothing registered twice, the times stay
    assert torch.registered == [("toy", "toy.v2.mar")]
    assert registrar.record["toy"]["routed_since"] == 1000
    assert registrar.record["toy"]["tensorflow"]["since"] == {"1": 1000, "2": 1000}


def test_an_archive_that_does_not_match_the_manifest_is_never_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = FakeTorchServe({1})
    registrar = _registrar(tmp_path, monkeypatch, {1, 2}, torch, tamper=True)
    registrar.step()
    registrar.step()
    assert torch.registered == []
    assert registrar.record["toy"]["routed"] == 1  # 2 is on TF only: 1 stays routed


def test_the_latest_rule_is_the_newest_version_every_framework_serves() -> None:
    assert routed({"tensorflow": [1, 2, 3], "pytorch": [1, 2]}) == 2
    assert routed({"tensorflow": [3], "pytorch": [2]}) == 3  # none in common: newest anywhere
    assert routed({"tensorflow": [], "pytorch": []}) is None
