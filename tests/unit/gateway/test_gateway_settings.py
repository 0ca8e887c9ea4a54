"""Settings precedence and the admin token file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.core.errors import Unauthorized
from gateway.edge.auth import Authenticator, resolve_admin_token
from gateway.settings import AuthSettings, GatewaySettings, load_settings

YAML = """
port: 9000
pytorch:
  transport: rest
  rest: ["http://127.0.0.1:1"]
models:
  digits-mlp: {mode: pinned, primary: pytorch}
"""


def test_yaml_then_environment_then_explicit_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(YAML)
    monkeypatch.setenv("DUALSERVE_PORT", "9100")
    monkeypatch.setenv("DUALSERVE_PYTORCH__TIMEOUT_S", "2.5")
    settings = load_settings(config, host="0.0.0.0")
    assert (settings.port, settings.host) == (9100, "0.0.0.0")
    assert settings.pytorch.transport == "rest" and settings.pytorch.timeout_s == 2.5
    assert settings.policy("digits-mlp").primary == "pytorch"
    assert settings.policy("other").mode == "weighted"  # the default policy: 50/50 sticky
    assert settings.policy("other").weights == {"tensorflow": 50.0, "pytorch": 50.0}


def test_bad_settings_fail_fast_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("pytorch: {transport: carrier-pigeon}\n")
    with pytest.raises(ValidationError, match=r"pytorch\.transport"):
        load_settings(config)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(ValidationError, match="unknown_field"):
        GatewaySettings(unknown_field=1)  # type: ignore[call-arg]


def test_admin_token_is_generated_once_into_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "admin_token"
    token, where = resolve_admin_token(AuthSettings(admin_token_file=path))
    assert where == path and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_admin_token(AuthSettings(admin_token_file=path))[0] == token


def test_admin_check_is_strict() -> None:
    auth = Authenticator(AuthSettings(admin_token="s3cret"))
    auth.check_admin({"authorization": "Bearer s3cret"})
    for headers in (
        {},
        {"authorization": "Bearer s3cre"},
        {"authorization": "s3cret"},
        {"x-api-key": "s3cret"},
    ):
        with pytest.raises(Unauthorized):
            auth.check_admin(headers)


def test_replicas_need_postgresql_and_say_why() -> None:
    with pytest.raises(ValidationError, match=r"replicas=3 needs experiments\.database_url"):
        GatewaySettings(replicas=3)
    with pytest.raises(ValidationError, match="each replica would keep its own routing state"):
        GatewaySettings(replicas=2, experiments={"database_url": "sqlite:///shared.sqlite3"})
    url = "postgresql://dualserve@db/dualserve"
    assert GatewaySettings(replicas=2, experiments={"database_url": url}).replicas == 2


def test_workers_need_a_database_they_all_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="workers=2 needs a database every worker opens"):
        GatewaySettings(workers=2)  # no file, no data_dir: each worker's log in its memory
    assert GatewaySettings(workers=2, experiments={"data_dir": tmp_path}).workers == 2
    config = tmp_path / "gateway.yaml"
    config.write_text(YAML)
    monkeypatch.setenv("DUALSERVE_WORKERS", "4")
    assert load_settings(config).workers == 4  # data/ beside the file
    with pytest.raises(ValidationError, match="workers"):
        GatewaySettings(workers=0)
