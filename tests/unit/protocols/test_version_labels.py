"""TF Serving version labels come from one source: `dualserve up --label` writes them into
TF Serving's model config (`version_labels { key: "stable" value: 1 }`) and the gateway's
config alike; none by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from backends.tfserving.commandline import TFServingSettings, write_configs
from backends.tfserving.model_config import read_model_config
from dualserve.cli import parse_labels
from dualserve.run_state import PytorchState, TensorflowState
from gateway.catalog import Catalog
from gateway.processes.launcher import gateway_config
from gateway.settings import settings_document
from tests.unit.gateway.gateway_fakes import make_store

TF = TensorflowState(grpc="127.0.0.1:1", rest="http://127.0.0.1:2")
TORCH = PytorchState(
    grpc="127.0.0.1:3", inference="http://127.0.0.1:4", management="http://127.0.0.1:5",
    token_file=Path("k"),
)  # fmt: skip


def test_cli_labels_parse_and_bad_ones_are_refused() -> None:
    assert parse_labels(["m:stable=1", "m:canary=2", "n:stable=3"]) == {
        "m": {"stable": 1, "canary": 2},
        "n": {"stable": 3},
    }
    for bad in ("m:stable", "stable=1", "m:stable=0", "m:=1", "m:stable=x"):
        with pytest.raises(typer.BadParameter, match="MODEL:LABEL=VERSION"):
            parse_labels([bad])


def test_both_configs_carry_the_same_labels(tmp_path: Path) -> None:
    labels = {"toy": {"stable": 1, "canary": 2}}
    files = write_configs(tmp_path, tmp_path / "run", TFServingSettings(), ["toy"], labels)
    (config,) = read_model_config(files["model_config"])
    assert dict(config.labels) == labels["toy"]
    gateway = settings_document(
        gateway_config(TF, TORCH, tmp_path, tmp_path, 8080, None, version_labels=labels)
    )
    assert gateway["version_labels"] == labels


def test_no_labels_by_default(tmp_path: Path) -> None:
    files = write_configs(tmp_path, tmp_path / "run", TFServingSettings(), ["toy"])
    assert "version_labels" not in files["model_config"].read_text()
    assert "version_labels" not in settings_document(
        gateway_config(TF, TORCH, tmp_path, tmp_path, 8080)
    )
    info = Catalog.from_store(make_store(tmp_path)).get("toy")
    assert info.labels == {}


def test_a_label_must_name_a_version_and_a_model_the_store_has(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert (
        Catalog.from_store(store, version_labels={"toy": {"stable": 1}})
        .get("toy")
        .resolve_version(None, "stable")
        == 1
    )
    with pytest.raises(ValueError, match="names version 7, which the model store does not"):
        Catalog.from_store(store, version_labels={"toy": {"stable": 7}})
    with pytest.raises(ValueError, match="not in the model store: \\['nope'\\]"):
        Catalog.from_store(store, version_labels={"nope": {"stable": 1}})


def test_settings_refuse_a_label_on_a_version_that_cannot_exist() -> None:
    from pydantic import ValidationError

    from gateway.settings import GatewaySettings

    assert GatewaySettings(version_labels={"m": {"stable": 1}}).version_labels == {
        "m": {"stable": 1}
    }
    with pytest.raises(ValidationError, match="greater than 0"):
        GatewaySettings(version_labels={"m": {"stable": 0}})
