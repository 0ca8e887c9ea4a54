"""TorchServe 0.12's management API, for versions registered while the server runs.

TorchServe registers nothing by itself after start: a new `.mar` is registered with
`POST /models?url=<file>&model_name=<m>&...` (the file relative to its `--model-store`),
made the default with `PUT /models/<m>/<v>/set-default`, and retired with
`DELETE /models/<m>/<v>` (refused for the default version). Every call carries the
management key (`Authorization: Bearer`, from `key_file.json`), and registering and
unregistering need `enable_model_api=true` (`TorchServeSettings.enable_model_api`).
Source: TorchServe's management API documentation (docs/management_api.md, 0.12).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from backends.torchserve.config import TorchServeSettings
from backends.torchserve.tokens import bearer, read_token

TIMEOUT_S = 5.0


class ManagementError(RuntimeError):
    """TorchServe refused or failed a management call; the message carries its answer."""


@dataclass(frozen=True)
class VersionState:
    """One registered version, and whether a worker of it is READY."""

    version: int
    ready: bool


@dataclass(frozen=True)
class Management:
    """One TorchServe's management API.

    Args:
        base: `http://host:port` of the management listener.
        token_file: its `key_file.json` (the management key is read at every call:
            TorchServe rewrites the file when a key is replaced).
    """

    base: str
    token_file: Path

    def _headers(self) -> dict[str, str]:
        return bearer(read_token(self.token_file, "management"))

    def _call(self, method: str, path: str, timeout: float = TIMEOUT_S) -> httpx.Response:
        try:
            response = httpx.request(
                method, f"{self.base}{path}", headers=self._headers(), timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise ManagementError(f"TorchServe management {method} {path}: {exc}") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise ManagementError(
                f"TorchServe management {method} {path}: HTTP {response.status_code}"
                f" {response.text.strip()[:300]}"
            )
        return response

    def versions(self, model: str) -> list[VersionState]:
        """Every registered version of `model` (none when it is unknown), oldest first."""
        response = self._call("GET", f"/models/{quote(model, safe='')}/all")
        if response.status_code == 404:
            return []
        states = [_state(entry) for entry in response.json() if isinstance(entry, dict)]
        return sorted((s for s in states if s is not None), key=lambda s: s.version)

    def default_version(self, model: str) -> int | None:
        """The version `/predictions/<m>` without a version goes to (`GET /models/<m>`
        describes the default version only); None when `model` is unknown."""
        response = self._call("GET", f"/models/{quote(model, safe='')}")
        if response.status_code == 404:
            return None
        states = [_state(entry) for entry in response.json() if isinstance(entry, dict)]
        return next((s.version for s in states if s is not None), None)

    def register(
        self, model: str, mar: str, settings: TorchServeSettings, timeout: float = 180.0
    ) -> None:
        """Register `mar` (a file name in the server's model store) as a version of
        `model`, with the launcher's batching and one worker; returns once the worker is
        READY (`synchronous=true`) or raises ManagementError."""
        query = {
            "url": mar,
            "model_name": model,
            "initial_workers": settings.workers_per_model,
            "batch_size": settings.batch_size,
            "max_batch_delay": settings.max_batch_delay_ms,
            "response_timeout": settings.response_timeout_s,
            "synchronous": "true",
        }
        params = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())
        response = self._call("POST", f"/models?{params}", timeout=timeout)
        if response.status_code == 404:
            raise ManagementError(f"TorchServe found no archive {mar}: {response.text[:300]}")

    def set_default(self, model: str, version: int) -> None:
        self._call("PUT", f"/models/{quote(model, safe='')}/{version}/set-default")

    def unregister(self, model: str, version: int) -> None:
        """Unregister one version (TorchServe refuses the default one: move it first)."""
        self._call("DELETE", f"/models/{quote(model, safe='')}/{version}", timeout=60.0)


def _state(entry: dict) -> VersionState | None:
    version = str(entry.get("modelVersion", ""))
    if not version.isdigit():
        return None
    workers = entry.get("workers", [])
    ready = any(isinstance(w, dict) and w.get("status") == "READY" for w in workers)
    return VersionState(int(version), ready)
