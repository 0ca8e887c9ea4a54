"""Compose and Kubernetes run what the local launchers run: same flags, keys and schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.tfserving.commandline import TFServingSettings, server_flags, write_configs
from backends.torchserve import launcher as ts_launcher
from backends.torchserve.config import ModelArchive, Ports, TorchServeSettings, render_config
from deploy import render
from gateway.edge.security_settings import hash_secret
from gateway.settings import GatewaySettings, load_settings

DEPLOY = render.DEPLOY
COMPOSE_FILE = DEPLOY / "compose.yaml"
K8S_BASE = DEPLOY / "k8s" / "base"


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def _container(manifest: str, kind: str = "Deployment") -> dict[str, Any]:
    doc = next(d for d in _load_all(K8S_BASE / manifest) if d["kind"] == kind)
    return dict(doc["spec"]["template"]["spec"]["containers"][0])


def _flag_shape(flags: list[str]) -> list[tuple[str, str]]:
    """(flag, value) with paths reduced to their file name: only the directories may differ."""
    pairs = [tuple(f.split("=", 1)) for f in flags]
    return [(k, Path(v).name if "/" in v else v) for k, v in pairs]


def test_generated_files_are_fresh() -> None:
    assert render.stale(render.render()) == [], "run: python -m deploy.render"


def test_tfserving_flags_equal_the_local_launchers(tmp_path: Path) -> None:
    files = write_configs(tmp_path / "store", tmp_path / "run", TFServingSettings(), ["m"])
    local = server_flags(TFServingSettings(), 8500, 8501, files)
    assert _flag_shape(render.tfserving_args()) == _flag_shape(local)
    compose = _compose()["x-tfserving"]
    assert compose["entrypoint"] == ["tensorflow_model_server"]
    assert compose["command"] == render.tfserving_args()
    container = _container("tfserving.yaml")
    assert container["command"] == ["tensorflow_model_server"]
    assert container["args"] == render.tfserving_args()


def test_tfserving_config_files_are_the_launchers_with_container_paths() -> None:
    text = (K8S_BASE / "files" / "models.config").read_text()
    for model in render.MODELS:
        assert f'base_path: "/models/tensorflow/{model}"' in text
    for name, content in render.tfserving_files().items():
        assert (DEPLOY / "config" / "tfserving" / name).read_text() == content


def _properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize(
    "path", [DEPLOY / "config/torchserve/config.properties", K8S_BASE / "files/config.properties"]
)
def test_torchserve_config_has_the_launchers_keys(path: Path, tmp_path: Path) -> None:
    ports = Ports(1, 2, 3, 4, 5, 6)
    archives = [ModelArchive(name="m", mar="m.mar", version="1")]
    local = _properties(render_config(TorchServeSettings(), ports, tmp_path, archives))
    deployed = _properties(path.read_text())
    assert list(deployed) == list(local)
    # Batching, workers, timeouts and the JVM are the local defaults, not re-tuned copies.
    for key in ("default_workers_per_model", "job_queue_size", "default_response_timeout",
                "metrics_mode", "enable_envvars_config", "vmargs", "enable_model_api"):  # fmt: skip
        assert deployed[key] == local[key], key


def test_token_auth_is_on_in_compose_and_off_in_the_cluster() -> None:
    compose = _properties((DEPLOY / "config/torchserve/config.properties").read_text())
    k8s = _properties((K8S_BASE / "files/config.properties").read_text())
    assert compose["disable_token_authorization"] == "false"
    assert k8s["disable_token_authorization"] == "true"


def test_torchserve_command_and_env_equal_the_launchers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ts_launcher.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert (Path(sys.executable).parent / "torchserve").is_file(), "run scripts/setup.sh"
    local = ts_launcher._command(tmp_path / "config.properties", tmp_path)
    expected = render.torchserve_command()
    assert [a if a.startswith("--") else Path(a).name for a in local[1:]] == [
        a if a.startswith("--") else Path(a).name for a in expected[1:]
    ]
    compose = _compose()["x-torchserve"]
    assert compose["command"] == expected
    assert compose["environment"] == render.torchserve_env()
    container = _container("torchserve.yaml")
    assert container["command"] == expected
    assert {e["name"]: e["value"] for e in container["env"]} == render.torchserve_env()


@pytest.mark.parametrize(
    "path", [DEPLOY / "config/gateway/gateway.yaml", K8S_BASE / "files/gateway.yaml"]
)
def test_gateway_config_loads_with_the_local_schema(path: Path) -> None:
    settings = load_settings(path)
    assert isinstance(settings, GatewaySettings)
    assert settings.host == "0.0.0.0" and settings.port == render.GATEWAY_PORT
    assert str(settings.model_store) == "/models"
    assert settings.tensorflow.addresses and settings.pytorch.addresses


def test_cluster_api_keys_come_from_the_secret_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUALSERVE_AUTH__API_KEYS", '["k1"]')
    settings = load_settings(K8S_BASE / "files/gateway.yaml")
    assert [k.digest for k in settings.auth.api_keys] == [hash_secret("k1")]  # only digests kept
    assert str(settings.auth.admin_token_file) == "/var/run/secrets/dualserve/admin_token"


def test_gateway_requirements_follow_pyproject() -> None:
    text = (DEPLOY / "docker/requirements-gateway.in").read_text()
    assert "scikit-learn" not in text and "tensorflow" not in text and "torch" not in text
    assert "fastapi" in text and "grpcio" in text
