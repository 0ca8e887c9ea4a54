"""TorchServe settings, config.properties rendering, token file and archive reading."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from backends.process import LaunchError
from backends.torchserve.archives import mar_version
from backends.torchserve.config import (
    ModelArchive,
    Ports,
    TorchServeSettings,
    models_json,
    render_config,
    worker_env,
)
from backends.torchserve.tokens import TokenError, bearer, read_token

PORTS = Ports(
    inference=8080,
    management=8081,
    metrics=8082,
    grpc_inference=7070,
    grpc_management=7071,
    worker_base=9100,
)
ARCHIVES = [
    ModelArchive("digits-mlp", "digits-mlp.mar", "3"),
    ModelArchive("digits-cnn", "digits-cnn.mar", "1"),
]


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    return dict(pairs)


def test_defaults_match_the_tf_serving_side() -> None:
    settings = TorchServeSettings()
    assert (settings.workers_per_model, settings.torch_threads) == (1, 1)
    assert (settings.batch_size, settings.max_batch_delay_ms) == (8, 2)
    assert settings.host == "127.0.0.1" and settings.inference_port == 0


def test_every_setting_is_documented() -> None:
    undocumented = [
        name for name, field in TorchServeSettings.model_fields.items() if not field.description
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    "bad", [{"inference_port": -1}, {"batch_size": 0}, {"workers": 2}, {"serve_versions": "x"}]
)
def test_bad_settings_fail_fast(bad: dict) -> None:
    with pytest.raises(ValidationError):
        TorchServeSettings(**bad)


def test_render_binds_loopback_and_turns_token_auth_on(tmp_path: Path) -> None:
    props = _properties(render_config(TorchServeSettings(), PORTS, tmp_path, ARCHIVES))
    assert props["inference_address"] == "http://127.0.0.1:8080"
    assert props["management_address"] == "http://127.0.0.1:8081"
    assert props["metrics_address"] == "http://127.0.0.1:8082"
    assert (props["grpc_inference_address"], props["grpc_inference_port"]) == ("127.0.0.1", "7070")
    assert (props["grpc_management_address"], props["grpc_management_port"]) == (
        "127.0.0.1",
        "7071",
    )
    assert props["disable_token_authorization"] == "false"
    assert props["enable_model_api"] == "false"
    assert props["model_store"] == str(tmp_path)
    assert props["initial_worker_port"] == "9100"


def test_render_loads_models_with_server_side_batching(tmp_path: Path) -> None:
    settings = TorchServeSettings(number_of_gpu=2, response_timeout_s=30)
    props = _properties(render_config(settings, PORTS, tmp_path, ARCHIVES))
    assert props["load_models"] == "digits-mlp=digits-mlp.mar,digits-cnn=digits-cnn.mar"
    models = json.loads(props["models"])
    assert models["digits-mlp"]["3"] == {
        "defaultVersion": True,
        "marName": "digits-mlp.mar",
        "minWorkers": 1,
        "maxWorkers": 1,
        "batchSize": 8,
        "maxBatchDelay": 2,
        "responseTimeout": 30,
    }
    assert props["default_workers_per_model"] == "1"
    assert props["number_of_gpu"] == "2"
    assert props["metrics_mode"] == "prometheus"
    assert props["enable_envvars_config"] == "true"
    assert props["install_py_dep_per_model"] == "false"
    assert props["default_response_timeout"] == "30"
    assert props["disable_system_metrics"] == "true"


def test_models_json_keeps_every_version_of_a_model() -> None:
    archives = [
        ModelArchive("m", "m.v2.mar", "2", default=True),
        ModelArchive("m", "m.v1.mar", "1", default=False),
    ]
    models = models_json(TorchServeSettings(batch_size=4), archives)
    assert sorted(models["m"]) == ["1", "2"]
    assert models["m"]["1"]["defaultVersion"] is False and models["m"]["2"]["batchSize"] == 4


def test_worker_env_pins_threads() -> None:
    env = worker_env(TorchServeSettings(torch_threads=2))
    assert env["DUALSERVE_TORCH_THREADS"] == "2" and env["OMP_NUM_THREADS"] == "2"


def _key_file(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "management": {"key": "m-key", "expiration time": "2030-01-01T00:00:00Z"},
                "inference": {"key": "i-key", "expiration time": "2030-01-01T00:00:00Z"},
                "API": {"key": "a-key"},
            }
        )
    )
    return path


def test_read_token_reads_both_kinds(tmp_path: Path) -> None:
    key_file = _key_file(tmp_path / "key_file.json")
    assert read_token(key_file) == "i-key"
    assert read_token(key_file, "management") == "m-key"
    assert bearer("i-key") == {"Authorization": "Bearer i-key"}


def test_read_token_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="no token file"):
        read_token(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenError, match="unreadable"):
        read_token(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text('{"management": {"key": "m"}}')
    with pytest.raises(TokenError, match="no 'inference' key"):
        read_token(tmp_path / "partial.json")
    with pytest.raises(ValueError, match="token kind"):
        read_token(_key_file(tmp_path / "k.json"), "API")


def test_mar_version_reads_the_archive_manifest(tmp_path: Path) -> None:
    mar = tmp_path / "m.mar"
    with zipfile.ZipFile(mar, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelVersion": "4"}}))
    assert mar_version(mar) == "4"
    (tmp_path / "broken.mar").write_bytes(b"not a zip")
    with pytest.raises(LaunchError, match=r"not a readable \.mar"):
        mar_version(tmp_path / "broken.mar")
