"""The launcher's command line and files, without starting a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.process import LaunchError
from backends.tfserving import TFServingSettings, start_tfserving, tfserving_status
from backends.tfserving.aux_config import parse_batching_parameters, parse_monitoring_config
from backends.tfserving.commandline import server_command, server_flags, write_configs
from backends.tfserving.flags import parse_flags
from backends.tfserving.model_config import read_model_config


def test_configs_are_written_as_tf_serving_text_protos(tmp_path: Path) -> None:
    settings = TFServingSettings(max_batch_size=4, batch_timeout_micros=500)
    files = write_configs(
        tmp_path / "store", tmp_path / "run", settings, ["digits-mlp", "digits-cnn"]
    )
    models = read_model_config(files["model_config"])
    assert [m.name for m in models] == ["digits-mlp", "digits-cnn"]
    assert models[0].base_path == (tmp_path / "store" / "tensorflow" / "digits-mlp").resolve()
    assert models[0].base_path.is_absolute()
    batching = parse_batching_parameters(files["batching"].read_text())
    assert (batching.max_batch_size, batching.batch_timeout_micros) == (4, 500)
    monitoring = parse_monitoring_config(files["monitoring"].read_text())
    assert monitoring.enable and monitoring.path == "/monitoring/prometheus/metrics"


def test_flags_are_the_real_binarys_and_parse_back(tmp_path: Path) -> None:
    settings = TFServingSettings(intra_op_threads=2, poll_wait_seconds=5)
    files = write_configs(tmp_path, tmp_path / "run", settings, ["m"])
    argv = server_flags(settings, 8500, 8501, files)
    assert "--enable_batching=true" in argv
    flags = parse_flags(argv)
    assert flags.warnings == []
    assert (flags.port, flags.rest_api_port) == (8500, 8501)
    assert flags.tensorflow_intra_op_parallelism == 2
    assert flags.file_system_poll_wait_seconds == 5
    assert flags.batching_parameters_file == str(files["batching"])
    assert flags.monitoring_config_file == str(files["monitoring"])


def test_batching_flags_are_left_out_when_disabled(tmp_path: Path) -> None:
    settings = TFServingSettings(enable_batching=False)
    argv = server_flags(settings, 1, 2, write_configs(tmp_path, tmp_path, settings, ["m"]))
    assert not any(f.startswith(("--enable_batching", "--batching")) for f in argv)


def test_real_binary_is_preferred_and_bundled_server_gets_identical_flags() -> None:
    flags = ["--port=1", "--rest_api_port=2"]
    real, kind = server_command(flags, binary="/usr/bin/tensorflow_model_server")
    assert (real, kind) == (["/usr/bin/tensorflow_model_server", *flags], "tensorflow_model_server")
    bundled, kind = server_command(flags, binary="")
    assert kind == "bundled"
    assert bundled == [sys.executable, "-m", "backends.tfserving", *flags]


def test_status_of_a_run_dir_without_a_server_is_none(tmp_path: Path) -> None:
    assert tfserving_status(tmp_path) is None
    (tmp_path / "tfserving.pid").write_text("999999999\n")
    assert tfserving_status(tmp_path) is None


def test_a_model_without_versions_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "tensorflow" / "m").mkdir(parents=True)
    with pytest.raises(LaunchError, match="no SavedModel version directory"):
        start_tfserving(tmp_path, tmp_path / "run", models=["m"])


def test_the_launcher_does_not_import_tensorflow() -> None:
    code = "import sys, backends.tfserving; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
