"""The capture's settings, `dualserve up --capture`, what the composition root wires,
and the replay client's wire format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from pydantic import ValidationError

from dualserve.cli import parse_capture
from gateway.capture.build import build_capture
from gateway.capture.records import INPUT, tensors_of
from gateway.capture.replay import answer_outputs, request_body
from gateway.settings import GatewaySettings
from gateway.telemetry.metrics import GatewayMetrics


def test_capture_is_off_by_default_and_a_bad_share_is_named(tmp_path: Path) -> None:
    settings = GatewaySettings(model_store=tmp_path)
    assert not settings.capture.enabled
    assert build_capture(settings, ["digits-mlp"], GatewayMetrics()) is None
    with pytest.raises(ValidationError, match=r"capture.models.digits-mlp: the share 1.5"):
        GatewaySettings(model_store=tmp_path, capture={"models": {"digits-mlp": 1.5}})
    with pytest.raises(ValidationError, match="queue_sise"):
        GatewaySettings(model_store=tmp_path, capture={"queue_sise": 3})


def test_an_unknown_model_or_no_folder_fails_the_start(tmp_path: Path) -> None:
    unknown = GatewaySettings(
        model_store=tmp_path, capture={"models": {"nope": 0.2}, "dir": str(tmp_path)}
    )
    with pytest.raises(ValueError, match="unknown models: nope"):
        build_capture(unknown, ["digits-mlp"], GatewayMetrics())
    nowhere = GatewaySettings(model_store=tmp_path, capture={"models": {"digits-mlp": 0.2}})
    with pytest.raises(ValueError, match=r"capture\.dir"):
        build_capture(nowhere, ["digits-mlp"], GatewayMetrics())


def test_the_capture_option_parses_shares_and_percentages() -> None:
    assert parse_capture(["digits-mlp=0.2", "digits-cnn=5%"]) == {
        "digits-mlp": 0.2,
        "digits-cnn": 0.05,
    }
    for bad in ("digits-mlp", "digits-mlp=2", "=0.1", "digits-mlp=abc"):
        with pytest.raises(typer.BadParameter, match="MODEL=SHARE"):
            parse_capture([bad])


def test_a_captured_row_goes_out_as_columnar_json_and_comes_back_exactly() -> None:
    x = (np.arange(6, dtype=np.float32) / 7).reshape(2, 3)
    row = {"input.input": x.ravel(), "input.input.shape": [2, 3]}
    assert np.array_equal(tensors_of(row, INPUT)["input"], x)
    body = request_body(row)
    assert body == {"inputs": {"input": x.tolist()}}
    assert np.array_equal(np.asarray(body["inputs"]["input"], np.float32), x)  # exact
    outputs = answer_outputs({"outputs": {"probabilities": x.tolist(), "class": [1, 2]}})
    assert outputs["probabilities"].dtype == np.float32
    assert np.array_equal(outputs["probabilities"], x)
    assert outputs["class"].tolist() == [1, 2]
    assert list(answer_outputs({"outputs": [[0.5, 0.5]]})) == ["output"]


def test_a_missing_pyarrow_fails_the_start_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    settings = GatewaySettings(
        model_store=tmp_path, capture={"models": {"digits-mlp": 0.2}, "dir": str(tmp_path)}
    )
    with pytest.raises(ValueError, match=r"capture needs pyarrow"):
        build_capture(settings, ["digits-mlp"], GatewayMetrics())
