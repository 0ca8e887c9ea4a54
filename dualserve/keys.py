"""`dualserve keys`: issue, list and revoke the gateway's API keys and admin token.

A new key is printed once, on stdout alone (so `KEY=$(dualserve keys new)` works), and only
its digest is stored, in the gateway's keys file (`auth.keys_file`, default `keys.yaml`
next to the gateway config). A running gateway re-reads that file within a second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import yaml

app = typer.Typer(help="API keys and the admin token (stored as digests only).")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        help="the gateway config (default: the one `dualserve up` writes under --run-dir);"
        " its keys file is auth.keys_file or keys.yaml beside it"
    ),
]
RunDirOption = Annotated[
    Path, typer.Option(envvar="DUALSERVE_RUN_DIR", help="where `dualserve up` keeps its files")
]
HEADER = "# Written by `dualserve keys`: sha256 digests only, never a key. Keep it private.\n"


def keys_file_for(config: Path | None, run_dir: Path) -> Path:
    """The keys file the gateway with this config reads (the config need not exist yet)."""
    from gateway.edge.auth import keys_file_path

    config = config or run_dir / "gateway" / "gateway.yaml"
    from gateway.edge.security_settings import AuthSettings

    raw = yaml.safe_load(config.read_text()) if config.is_file() else None
    auth = AuthSettings.model_validate((raw or {}).get("auth") or {})
    path = keys_file_path(auth, config)
    assert path is not None  # a config file is given
    return path


def _write(path: Path, content: object) -> None:
    """Atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(HEADER + yaml.safe_dump(content, sort_keys=False))
    tmp.replace(path)


@app.command("new")
def new(
    config: ConfigOption = None,
    run_dir: RunDirOption = Path("run"),
    admin: Annotated[bool, typer.Option("--admin", help="a new admin token instead")] = False,
    name: Annotated[str | None, typer.Option(help="who holds the key")] = None,
    rate: Annotated[float | None, typer.Option(help="requests/s for this key")] = None,
    burst: Annotated[int | None, typer.Option(help="requests at once for this key")] = None,
) -> None:
    """Print a new key once and store its digest (an admin token replaces the old one)."""
    from gateway.edge.auth import new_secret, read_keys_file
    from gateway.edge.security_settings import ApiKeySettings, RateLimitSettings, hash_secret

    path = keys_file_for(config, run_dir)
    keys = read_keys_file(path)
    secret = new_secret()
    if admin:
        keys.admin_token = hash_secret(secret)
    else:
        limit = RateLimitSettings(requests_per_s=rate, burst=burst) if rate else None
        entry = ApiKeySettings(digest=hash_secret(secret), name=name, rate_limit=limit)
        keys.api_keys.append(entry)
    _write(path, keys.model_dump(mode="json", exclude_none=True))
    what = "admin token" if admin else f"API key{f' for {name}' if name else ''}"
    typer.echo(f"new {what}; its digest is in {path}. The key is shown once:", err=True)
    typer.echo(secret)


@app.command("list")
def list_keys(config: ConfigOption = None, run_dir: RunDirOption = Path("run")) -> None:
    """The keys in the keys file: name, digest prefix, rate limit."""
    from gateway.edge.auth import read_keys_file

    path = keys_file_for(config, run_dir)
    keys = read_keys_file(path)
    typer.echo(f"{path}: admin token {'set' if keys.admin_token else 'not set'}")
    for key in keys.api_keys:
        limit = key.rate_limit.requests_per_s if key.rate_limit else None
        typer.echo(f"{key.digest[:19]}  {key.name or '-'}  {limit or 'default'} req/s")


@app.command("revoke")
def revoke(
    key: Annotated[
        str, typer.Argument(help="a name, or a digest prefix (sha256: + 8 hex or more)")
    ],
    config: ConfigOption = None,
    run_dir: RunDirOption = Path("run"),
) -> None:
    """Remove API keys by name or digest prefix; a running gateway drops them within a second."""
    from gateway.edge.auth import read_keys_file

    path = keys_file_for(config, run_dir)
    keys = read_keys_file(path)
    by_digest = len(key) >= len("sha256:") + 8 and key.startswith("sha256:")
    kept = [
        k for k in keys.api_keys if k.name != key and not (by_digest and k.digest.startswith(key))
    ]
    if len(kept) == len(keys.api_keys):
        typer.echo(f"no key named or starting with '{key}' in {path}", err=True)
        raise typer.Exit(code=1)
    keys.api_keys = kept
    _write(path, keys.model_dump(mode="json", exclude_none=True))
    typer.echo(f"revoked; {len(kept)} API key(s) left in {path}", err=True)
