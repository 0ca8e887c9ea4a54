"""The contracts between processes: `run/state.json` (`dualserve.run_state`) and the
gateway YAML `dualserve up` writes (`gateway.settings.write_settings`), each read and
written in one place; a missing or unknown field is an error that names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from dualserve.run_state import (
    STATE_FILE,
    GatewayState,
    PytorchState,
    RunState,
    RunStateError,
    StackStatus,
    TensorflowState,
    read_state,
    write_state,
)
from gateway.processes.launcher import gateway_config
from gateway.settings import load_settings, settings_document, write_settings

STATE = RunState(
    tensorflow=TensorflowState(
        rest="http://127.0.0.1:1", grpc="127.0.0.1:2", metrics="http://127.0.0.1:1/m", pid=11
    ),
    pytorch=PytorchState(
        inference="http://127.0.0.1:3", management="http://127.0.0.1:4", grpc="127.0.0.1:5",
        token_file=Path("/run/torchserve/key_file.json"), pid=12,
    ),
    gateway=GatewayState(
        rest="http://127.0.0.1:6", grpc="127.0.0.1:7", admin_token_file=Path("/run/admin_token"),
        config_file=Path("/run/gateway.yaml"), pid=13, workers=2, worker_pids=(14, 15),
    ),
)  # fmt: skip


def _document(tmp_path: Path) -> dict:
    return json.loads(write_state(tmp_path, STATE).read_text())


def test_state_reads_back_what_up_wrote(tmp_path: Path) -> None:
    path = write_state(tmp_path, STATE)
    assert path == tmp_path / STATE_FILE
    assert read_state(tmp_path) == STATE
    document = json.loads(path.read_text())  # the JSON keys other tools read
    assert document["pytorch"]["token_file"] == "/run/torchserve/key_file.json"
    assert document["gateway"]["worker_pids"] == [14, 15]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left behind


def test_no_state_file_says_to_run_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `dualserve up` first"):
        read_state(tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d["gateway"].pop("rest"), "gateway.rest: Field required"),
        (lambda d: d.pop("pytorch"), "pytorch: Field required"),
        (lambda d: d["tensorflow"].update(port=1), "tensorflow.port: Extra inputs"),
        (lambda d: d["gateway"].update(workers="two"), "gateway.workers: Input should be"),
    ],
)
def test_a_missing_unknown_or_mistyped_field_is_named(tmp_path: Path, change, named) -> None:
    document = _document(tmp_path)
    change(document)
    (tmp_path / STATE_FILE).write_text(json.dumps(document))
    with pytest.raises(RunStateError, match=named) as error:
        read_state(tmp_path)
    assert str(tmp_path / STATE_FILE) in str(error.value)


def test_a_file_that_is_not_json_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(RunStateError, match=str(tmp_path / STATE_FILE)):
        read_state(tmp_path)


def test_status_json_lists_only_what_runs() -> None:
    assert json.loads(StackStatus().as_json()) == {}
    partial = StackStatus(tensorflow=STATE.tensorflow)
    assert json.loads(partial.as_json()) == {"tensorflow": STATE.tensorflow.model_dump(mode="json")}
    assert list(partial.running()) == ["tensorflow"]
    assert list(STATE.parts()) == ["tensorflow", "pytorch", "gateway"]


def test_the_gateway_yaml_up_writes_is_what_the_gateway_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUALSERVE_PORT", "9999")  # the gateway's own environment ...
    config_file = tmp_path / "gateway.yaml"
    labels = {"toy": {"stable": 1}}
    written = gateway_config(
        STATE.tensorflow, STATE.pytorch, tmp_path, tmp_path, 0, 0, 2, labels, config_file
    )
    write_settings(written, config_file)
    assert "port: 0" in config_file.read_text().splitlines()  # ... is not written into it
    monkeypatch.delenv("DUALSERVE_PORT")
    loaded = load_settings(config_file)
    assert settings_document(loaded) == settings_document(written)
    assert loaded.tensorflow.rest == [STATE.tensorflow.rest]
    assert loaded.pytorch.rest == [STATE.pytorch.inference]
    assert loaded.pytorch.token_file == STATE.pytorch.token_file
    assert (loaded.workers, loaded.version_labels) == (2, labels)
    assert loaded.auth.admin_token_file == tmp_path / "admin_token"
    assert loaded.config_file == config_file  # where it was read from, not a field written
    assert "config_file" not in config_file.read_text()


def test_an_unknown_field_in_the_gateway_yaml_is_named(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.yaml"
    write_settings(
        gateway_config(STATE.tensorflow, STATE.pytorch, tmp_path, tmp_path, 0), config_file
    )
    text = config_file.read_text().replace("token_file:", "token_fil:")
    config_file.write_text(text)
    with pytest.raises(
        ValidationError, match=r"pytorch\.token_fil\n  Extra inputs are not permitted"
    ):
        load_settings(config_file)
