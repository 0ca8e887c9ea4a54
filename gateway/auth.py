"""API keys for predictions and a bearer token for the admin API; constant-time checks."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import Unauthorized
from gateway.settings import AuthSettings

DEFAULT_ADMIN_TOKEN_FILE = Path(".dualserve") / "admin_token"


def resolve_admin_token(settings: AuthSettings) -> tuple[str, Path | None]:
    """The configured token, else the one in the token file, else a new one written there."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), settings.admin_token_file
    path = settings.admin_token_file or DEFAULT_ADMIN_TOKEN_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), path
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, path


def presented_key(headers: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get("x-api-key")


def _matches(candidate: str | None, secrets_: list[str]) -> bool:
    if candidate is None:
        return False
    given = candidate.encode()
    # Compare against every key so timing does not reveal which one nearly matched.
    return any([hmac.compare_digest(given, key.encode()) for key in secrets_])


class Authenticator:
    def __init__(self, settings: AuthSettings) -> None:
        self._api_keys = [key.get_secret_value() for key in settings.api_keys]
        self._admin_token, self.admin_token_file = resolve_admin_token(settings)

    @property
    def predictions_protected(self) -> bool:
        return bool(self._api_keys)

    def check_predict(self, headers: Mapping[str, str]) -> None:
        if self._api_keys and not _matches(presented_key(headers), self._api_keys):
            raise Unauthorized("a valid API key is required (Authorization: Bearer or X-API-Key)")

    def check_admin(self, headers: Mapping[str, str]) -> None:
        authorization = headers.get("authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if not _matches(token, [self._admin_token]):
            raise Unauthorized("the admin API needs 'Authorization: Bearer <admin token>'")
