"""`dualserve keys`: a key is printed once and only its digest is stored."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dualserve.cli import app
from gateway.core.errors import Unauthorized
from gateway.edge.auth import Authenticator
from gateway.settings import AuthSettings


def _keys(*args: str) -> str:
    result = CliRunner().invoke(app, ["keys", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_new_key_is_shown_once_and_stored_as_a_digest(tmp_path: Path) -> None:
    config = tmp_path / "gateway" / "gateway.yaml"
    key = _keys("new", "--config", str(config), "--name", "reports", "--rate", "5")
    admin = _keys("new", "--admin", "--config", str(config))
    keys_file = config.parent / "keys.yaml"
    text = keys_file.read_text()
    assert len(key) == 43 and key not in text and admin not in text  # 256 bits, base64
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    stored = yaml.safe_load(text)
    assert stored["api_keys"][0]["name"] == "reports"
    assert stored["api_keys"][0]["rate_limit"] == {"requests_per_s": 5.0}
    auth = Authenticator(AuthSettings(admin_token_file=tmp_path / "unused"), config)
    auth.check_predict({"x-api-key": key})
    auth.check_admin({"authorization": f"Bearer {admin}"})
    with pytest.raises(Unauthorized):
        auth.check_admin({"authorization": f"Bearer {key}"})
    assert "reports" in _keys("list", "--config", str(config))
    _keys("revoke", "reports", "--config", str(config))
    assert yaml.safe_load(keys_file.read_text())["api_keys"] == []


def test_the_config_can_name_its_keys_file(tmp_path: Path) -> None:
    config, elsewhere = tmp_path / "gateway.yaml", tmp_path / "secrets" / "keys.yaml"
    config.write_text(yaml.safe_dump({"auth": {"keys_file": str(elsewhere)}}))
    _keys("new", "--config", str(config))
    assert len(yaml.safe_load(elsewhere.read_text())["api_keys"]) == 1
    assert not (tmp_path / "keys.yaml").exists()


def test_revoking_an_unknown_key_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["keys", "revoke", "nobody", "--config", str(tmp_path / "g.yaml")]
    )
    assert result.exit_code == 1 and "no key named" in result.output


def test_the_default_is_the_config_dualserve_up_writes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _keys("new", "--run-dir", str(run_dir))
    assert len(yaml.safe_load((run_dir / "gateway" / "keys.yaml").read_text())["api_keys"]) == 1
