"""Settings of the gateway's defences: credentials, rate limits, request limits.

Part of the gateway settings (`GatewaySettings.auth`, `.limits`); kept apart so that the
rules about secrets live in one module.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"


def secret_digest(secret: str) -> str:
    """`sha256:<hex>` of a key or token; a value already in that form is kept.

    A plain SHA-256 suffices because the keys dualserve issues are random 256-bit values
    (`dualserve keys new`): nobody can search that space, however fast the hash, while a
    slow password hash (PBKDF2, scrypt) would cost milliseconds on every request. A
    low-entropy key chosen by hand would deserve a slow hash; issue keys with the command.
    """
    if re.fullmatch(DIGEST_PATTERN, secret):
        return secret
    return hash_secret(secret)


def hash_secret(secret: str) -> str:
    """`sha256:<hex>` of a presented credential, always hashed: a digest presented as a
    key must not match itself, or a leaked config would be a list of valid keys."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def _digest_of(value: Any) -> Any:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return secret_digest(value) if isinstance(value, str) else value


class RateLimitSettings(BaseModel):
    """A token bucket per API key: `requests_per_s` sustained, `burst` at once."""

    requests_per_s: float | None = Field(
        None, gt=0, description="sustained requests per second per key; None = no limit"
    )
    burst: int | None = Field(
        None, ge=1, description="bucket size: requests at once; None = one second's worth"
    )


class ApiKeySettings(BaseModel):
    """One prediction API key, by its digest. A bare string is accepted too: a digest
    (`sha256:<hex>`) or a plain key, which is hashed at once (only digests are kept)."""

    digest: str = Field(pattern=DIGEST_PATTERN, description="sha256:<hex> of the key")
    name: str | None = Field(None, description="who holds the key (logs, `keys list`)")
    rate_limit: RateLimitSettings | None = Field(
        None, description="this key's limit; None = auth.rate_limit"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str | SecretStr):
            return {"digest": _digest_of(value)}
        if isinstance(value, dict) and "digest" in value:
            return {**value, "digest": _digest_of(value["digest"])}
        return value


class KeysFile(BaseModel):
    """The digests `dualserve keys new` writes (YAML); never a key itself."""

    admin_token: str | None = Field(None, pattern=DIGEST_PATTERN, description="admin digest")
    api_keys: list[ApiKeySettings] = Field(default_factory=list)


class AuthSettings(BaseModel):
    """Who may call: API keys for predictions and feedback, a bearer token for /admin.

    The gateway keeps digests only. Plain values are still accepted (hashed at load), so a
    secret store can hand the same key to clients and to the gateway.
    """

    admin_token: str | None = Field(
        None, description="admin token digest (sha256:<hex>; a plain token is hashed)"
    )
    admin_token_file: Path | None = Field(
        None, description="where the admin token is read, or generated at first start"
    )
    api_keys: list[ApiKeySettings] = Field(
        default_factory=list, description="prediction API keys; none anywhere = open"
    )
    keys_file: Path | None = Field(
        None,
        description="digests from `dualserve keys new`, re-read when it changes; None ="
        " keys.yaml next to the config file",
    )
    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description="default per-key rate limit"
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _hash_admin_token(cls, value: Any) -> Any:
        return _digest_of(value)


DEFAULT_MAX_TENSOR_ELEMENTS = 1 << 22


class LimitsSettings(BaseModel):
    """What one request may hold; past a limit the answer is a 400 naming it (413 for the
    body size, `max_body_bytes`). Checked at every ingress, REST and gRPC."""

    max_batch_size: int = Field(
        4096, ge=1, description="rows per input tensor (TF Serving's batching max_batch_size)"
    )
    max_tensor_elements: int = Field(
        DEFAULT_MAX_TENSOR_ELEMENTS, ge=1, description="values in one input tensor"
    )
    max_json_depth: int = Field(32, ge=2, description="nesting of arrays and objects in a body")
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="longest time a request body may take to arrive (nginx's"
        " client_body_timeout); past it 408, and its admission slot is free again",
    )
    max_request_id_length: int = Field(
        256, ge=16, description="characters in a request id (X-Request-Id, an OIP body id)"
    )
