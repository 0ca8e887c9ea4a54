"""TorchServe 0.12's token file.

With token authorization on (the default in 0.12), the frontend writes `key_file.json`
into its working directory at start and deletes it on a clean `torchserve --stop`:

    {
      "management": {"key": "<key>", "expiration time": "<ISO-8601 instant>"},
      "inference":  {"key": "<key>", "expiration time": "<ISO-8601 instant>"},
      "API":        {"key": "<key>"}
    }

Clients send `Authorization: Bearer <key>` (REST header or gRPC metadata
`authorization`): the inference key for the inference APIs, the management key for the
management API. The "API" key only serves `GET /token?type=...` on the management port,
which replaces a key; read the file again after that (read_token never caches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

TokenKind = Literal["inference", "management"]
KINDS: tuple[str, ...] = ("inference", "management")


class TokenError(RuntimeError):
    """The token file is missing, unreadable or lacks the requested key."""


def read_token(token_file: Path, kind: str = "inference") -> str:
    """The `inference` or `management` key from TorchServe's key_file.json."""
    if kind not in KINDS:
        raise ValueError(f"token kind must be one of {', '.join(KINDS)}, got '{kind}'")
    try:
        data = json.loads(Path(token_file).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TokenError(f"no token file at {token_file}; is TorchServe running?") from exc
    except (OSError, ValueError) as exc:
        raise TokenError(f"token file {token_file} is unreadable: {exc}") from exc
    key = data.get(kind, {}).get("key") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise TokenError(f"token file {token_file} has no '{kind}' key")
    return key


def bearer(key: str) -> dict[str, str]:
    """The HTTP header that carries a TorchServe key."""
    return {"Authorization": f"Bearer {key}"}
