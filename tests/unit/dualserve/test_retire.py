"""`dualserve retire`: never the routed version; TF Serving's directory leaves (with older
ones its `latest` policy would bring back), then TorchServe unregisters, default moved first."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.torchserve.management import VersionState
from dualserve import models as models_module
from dualserve.models import RetireError, retire
from dualserve.run_state import OipState, PytorchState, StackStatus, TensorflowState

STATE = StackStatus(
    tensorflow=TensorflowState(rest="http://tf", grpc="tf:1"),
    pytorch=PytorchState(
        inference="http://ts:0", management="http://ts", grpc="ts:1",
        token_file=Path("key_file.json"),
    ),
)  # fmt: skip


class FakeTorchServe:
    def __init__(self, versions: set[int], default: int) -> None:
        self.registered = set(versions)
        self.default = default
        self.calls: list[str] = []

    def versions(self, model: str) -> list[VersionState]:
        return [VersionState(v, True) for v in sorted(self.registered)]

    def default_version(self, model: str) -> int | None:
        return self.default

    def set_default(self, model: str, version: int) -> None:
        self.calls.append(f"default {version}")
        self.default = version

    def unregister(self, model: str, version: int) -> None:
        assert version != self.default, "TorchServe refuses to unregister its default"
        self.calls.append(f"unregister {version}")
        self.registered.discard(version)


def _setup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_disk: list[int],
    ts: FakeTorchServe,
) -> Path:
    store = tmp_path / "store"
    for version in on_disk:
        (store / "tensorflow" / "m" / str(version)).mkdir(parents=True)

    def tf_versions(rest: str, model: str) -> set[int]:
        # TF Serving's latest policy (2 versions) over what is on disk now
        present = sorted(int(p.name) for p in (store / "tensorflow" / "m").iterdir())
        return set(present[-2:])

    monkeypatch.setattr(models_module, "tf_versions", tf_versions)
    monkeypatch.setattr(
        models_module,
        "torch_versions",
        lambda torch, model: {s.version for s in ts.versions(model)},
    )
    monkeypatch.setattr(models_module, "Management", lambda base, token_file: ts)
    return store


def test_the_routed_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ts = FakeTorchServe({1, 2}, default=2)
    store = _setup(tmp_path, monkeypatch, [1, 2], ts)
    with pytest.raises(RetireError, match="routed version"):
        retire(store, STATE, "m", 2)
    assert (store / "tensorflow" / "m" / "2").is_dir() and ts.calls == []


def test_a_version_no_backend_serves_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _setup(tmp_path, monkeypatch, [1, 2], FakeTorchServe({1, 2}, default=2))
    with pytest.raises(RetireError, match="neither backend serves m version 7"):
        retire(store, STATE, "m", 7)


def test_an_old_version_leaves_tf_serving_then_torchserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = FakeTorchServe({1, 2, 3}, default=2)
    # 3 landed: TF serves {2, 3} (1 left by its policy, still on disk)
    store = _setup(tmp_path, monkeypatch, [1, 2, 3], ts)
    done = retire(store, STATE, "m", 2, timeout=1)
    retired = store / "retired" / "tensorflow" / "m"
    # 1 moves too: with 2 gone, latest-2 would load it again
    assert sorted(p.name for p in retired.iterdir()) == ["1", "2"]
    assert [p.name for p in (store / "tensorflow" / "m").iterdir()] == ["3"]
    assert ts.calls == ["default 3", "unregister 2"]
    assert done[-1] == "pytorch: m version 2 unregistered"


def test_the_oip_server_is_shown_and_left_alone_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = FakeTorchServe({1, 2, 3}, default=3)
    store = _setup(tmp_path, monkeypatch, [1, 2, 3], ts)
    asked: list[str] = []

    def oip_versions(rest: str, model: str) -> set[int]:
        asked.append(rest)
        return {2, 3}

    monkeypatch.setattr(models_module, "oip_versions", oip_versions)
    with_oip = STATE.model_copy(update={"oip": OipState(rest="http://oip", grpc="oip:1")})
    done = retire(store, with_oip, "m", 2, timeout=1)
    assert done[-1].startswith("pytorch@oip: still serves m version 2")
    assert asked == ["http://oip"]
    without = retire(store, STATE, "m", 1, timeout=1)  # no OIP server: no OIP line
    assert without[-1] == "pytorch: m version 1 unregistered" and asked == ["http://oip"]


def test_models_shows_the_oip_row_outside_the_routed_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualserve.models import model_views
    from tests.unit.gateway.gateway_fakes import make_store

    store = make_store(tmp_path / "store", (1, 2))
    monkeypatch.setattr(models_module, "tf_versions", lambda rest, model: {1})
    monkeypatch.setattr(models_module, "torch_versions", lambda torch, model: {1})
    monkeypatch.setattr(models_module, "oip_versions", lambda rest, model: {1, 2})
    with_oip = STATE.model_copy(update={"oip": OipState(rest="http://oip", grpc="oip:1")})
    [view] = model_views(store, tmp_path / "run", with_oip)
    assert view.served == {"tensorflow": [1], "pytorch": [1], "pytorch@oip": [1, 2]}
    assert view.routed == 1  # the OIP server's v2 does not make 2 routed
    [plain] = model_views(store, tmp_path / "run", STATE)
    assert "pytorch@oip" not in plain.served
