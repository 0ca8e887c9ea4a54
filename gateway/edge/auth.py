"""API keys for predictions and a bearer token for the admin API.

Only digests are held (`sha256:<hex>`, see `gateway.settings.secret_digest` for why a
fast hash is the right one for random 256-bit keys): a presented credential is hashed and
compared with every known digest by `hmac.compare_digest`, so neither the time taken nor
an early exit tells how close a guess was. Keys come from the settings and from the keys
file `dualserve keys new` writes, which is re-read (at most once a second) when it
changes, so a new key works without a restart. Each key has a token bucket
(`gateway.edge.ratelimit`); a key past its limit gets 429 with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from gateway.core.errors import Unauthorized
from gateway.edge.ratelimit import RateLimiter
from gateway.edge.security_settings import ApiKeySettings, AuthSettings, KeysFile, hash_secret

DEFAULT_ADMIN_TOKEN_FILE = Path(".dualserve") / "admin_token"
KEYS_FILE_NAME = "keys.yaml"
RELOAD_EVERY_S = 1.0
logger = logging.getLogger(__name__)


def new_secret() -> str:
    """A new API key or admin token: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def resolve_admin_token(settings: AuthSettings) -> tuple[str, Path]:
    """The admin token in the token file, or a new one written there (mode 0600).

    The file is the operator's copy of the token (as TorchServe's key_file.json is);
    the gateway keeps only its digest. Creation is atomic and exclusive, so workers that
    start together agree on one token.
    """
    path = settings.admin_token_file or DEFAULT_ADMIN_TOKEN_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip(), path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    draft = Path(name)
    with os.fdopen(fd, "w") as handle:
        handle.write(new_secret() + "\n")
    try:
        os.link(draft, path)  # fails if another process created it first
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: last writer wins
        os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    return path.read_text().strip(), path


def keys_file_path(settings: AuthSettings, config_file: Path | None) -> Path | None:
    """`auth.keys_file`, else keys.yaml next to the config file, else none."""
    if settings.keys_file is not None:
        return settings.keys_file
    return Path(config_file).parent / KEYS_FILE_NAME if config_file is not None else None


def read_keys_file(path: Path) -> KeysFile:
    """The digests in a keys file; an absent file holds none."""
    if not path.is_file():
        return KeysFile()
    return KeysFile.model_validate(yaml.safe_load(path.read_text()) or {})


def presented_key(headers: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return headers.get("x-api-key")


def _raw(digest: str) -> bytes:
    """The 32 bytes of a `sha256:<hex>` digest (compared raw: hex costs microseconds)."""
    return bytes.fromhex(digest.removeprefix("sha256:"))


def _match(candidate: str | None, digests: list[bytes]) -> int | None:
    """The index of the raw digest `candidate` hashes to; every digest is compared (each
    in constant time), so the time taken does not tell which key nearly matched."""
    if not candidate:
        return None
    given = hashlib.sha256(candidate.encode()).digest()
    found = None
    for index, digest in enumerate(digests):
        if hmac.compare_digest(given, digest):
            found = index
    return found


class Authenticator:
    """Checks the credentials of every protected call, REST and gRPC alike.

    Args:
        settings: `auth` of the gateway settings.
        config_file: the gateway's config file (locates the default keys file).
        clock: monotonic seconds for the rate limits and the keys file re-reads.
    """

    def __init__(
        self,
        settings: AuthSettings,
        config_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._limiter = RateLimiter(clock)
        self.keys_file = keys_file_path(settings, config_file)
        self._keys_stamp: tuple[int, int] | None = None
        self._next_reload = 0.0
        self._file = KeysFile()
        self._keys: list[ApiKeySettings] = []
        self._digests: list[bytes] = []
        self._reload(force=True)
        self._index()
        self.admin_token_file: Path | None = None
        self._token_file_digest: str | None = None
        if settings.admin_token is None and self._file.admin_token is None:
            token, self.admin_token_file = resolve_admin_token(settings)
            self._token_file_digest = hash_secret(token)

    def _reload(self, force: bool = False) -> None:
        """Re-read the keys file when it changed (checked at most once a second)."""
        now = self._clock()
        if self.keys_file is None or (not force and now < self._next_reload):
            return
        self._next_reload = now + RELOAD_EVERY_S
        try:
            stat = self.keys_file.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._keys_stamp:
            return
        try:
            self._file = read_keys_file(self.keys_file)
            self._index()
        except (OSError, ValueError, yaml.YAMLError):
            if force:
                raise  # at start: fail fast, naming the file
            logger.exception("%s is unreadable; keeping the keys read before", self.keys_file)
        self._keys_stamp = stamp

    def _index(self) -> None:
        """The keys of the settings and the file, with their digests as bytes."""
        self._keys = [*self._settings.api_keys, *self._file.api_keys]
        self._digests = [_raw(key.digest) for key in self._keys]

    @property
    def predictions_protected(self) -> bool:
        self._reload()
        return bool(self._keys)

    def check_predict(self, headers: Mapping[str, str]) -> None:
        """Admit a prediction or feedback call (open when no API key is configured).

        Raises:
            Unauthorized: no, a malformed or an unknown key.
            RateLimited: the key's rate limit is used up (429, `Retry-After`).
        """
        if not self.predictions_protected:
            return
        keys, digests = self._keys, self._digests
        index = _match(presented_key(headers), digests)
        if index is None:
            raise Unauthorized("a valid API key is required (Authorization: Bearer or X-API-Key)")
        key = keys[index]
        limit = key.rate_limit or self._settings.rate_limit
        self._limiter.check(key.digest, limit, f"API key {key.name or key.digest[:15]}")

    def check_admin(self, headers: Mapping[str, str]) -> None:
        """Raises Unauthorized unless `Authorization: Bearer <admin token>`."""
        self._reload()
        digest = self._settings.admin_token or self._file.admin_token or self._token_file_digest
        authorization = headers.get("authorization", "")
        token = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        if digest is None or _match(token, [_raw(digest)]) is None:
            raise Unauthorized("the admin API needs 'Authorization: Bearer <admin token>'")
