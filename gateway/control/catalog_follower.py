"""The catalog follows the backends: what each one serves, and the manifest, re-read live.

Every gateway worker runs one `CatalogFollower`. Each `poll_s` (and at once when a backend
answers a routed version with not-found: `Catalog.refresh`) it asks every backend which
versions of each model it serves and re-reads `manifest.json` when its modification time
changed, then replaces the models whose picture changed (`Catalog.update`). So a version
that lands is routable one poll after both backends serve it, and a version that leaves
stops being routed one poll after its backend stops listing it; requests already routed
keep the `ModelInfo` they took and finish on their version.

What "serves" means, per backend:
- TF Serving: the model status API, `GET /v1/models/{m}`, lists the version AVAILABLE
  (TF Serving's `GetModelStatus`; LOADING, UNLOADING and END versions are not served);
- TorchServe: the management API, `GET /models/{m}` with the management key, lists the
  version with a READY worker (TorchServe 0.12's "describe model" answer, one entry per
  version);
- an Open Inference Protocol server (Triton, KServe, OVMS, `backends/oip`): the model
  metadata, `GET /v2/models/{m}`, lists the version under `versions` (KServe's Open
  Inference Protocol, "Model Metadata"; Triton lists the versions it serves).
With several replicas, a version counts as served when every replica that answered serves
it (the pool may pick any of them). A backend that does not answer keeps the last picture it
gave (its breaker and readiness probe speak for a dead backend); one never heard from
counts as serving what the manifest says it exports, as an unfollowed catalog does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import httpx

from gateway.catalog import Catalog, ModelInfo
from gateway.core.types import FRAMEWORKS, Framework
from gateway.edge.security_settings import LimitsSettings
from gateway.settings import GatewaySettings, ServerKind
from gateway.upstreams.torchserve_token import TokenSource
from trainers.errors import ManifestError
from trainers.manifest import load_manifest, manifest_path

logger = logging.getLogger(__name__)
STATUS_TIMEOUT_S = 2.0


class ServedVersions(Protocol):
    """What one backend kind says it serves."""

    framework: Framework

    async def versions(self, model: str) -> frozenset[int] | None:
        """The versions of `model` served now (empty: none); None when no replica answered."""
        ...

    async def aclose(self) -> None: ...


class _HttpStatus:
    """Shared: ask every replica, intersect the answers of those that answered."""

    framework: Framework

    def __init__(self, bases: Sequence[str], timeout_s: float = STATUS_TIMEOUT_S) -> None:
        self.bases = [b.rstrip("/") for b in bases]
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def versions(self, model: str) -> frozenset[int] | None:
        answers = await asyncio.gather(*(self._one(base, model) for base in self.bases))
        known = [a for a in answers if a is not None]
        return frozenset.intersection(*known) if known else None

    async def _one(self, base: str, model: str) -> frozenset[int] | None:
        try:
            response = await self._client.get(self.url(base, model), headers=self.headers())
            if response.status_code == 404:  # the backend knows no version of the model
                return frozenset()
            response.raise_for_status()
            return self.parse(response.json())
        except (httpx.HTTPError, ValueError, OSError) as exc:
            logger.debug("%s status of %s: %s", self.framework, model, exc)
            return None

    def url(self, base: str, model: str) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    def parse(self, body: object) -> frozenset[int]:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self._client.aclose()


class TFServingVersions(_HttpStatus):
    """TF Serving's model status API over REST, `GET /v1/models/{m}`:
    `{"model_version_status": [{"version": "2", "state": "AVAILABLE", ...}, ...]}`."""

    framework: Framework = "tensorflow"

    def url(self, base: str, model: str) -> str:
        return f"{base}/v1/models/{quote(model, safe='')}"

    def parse(self, body: object) -> frozenset[int]:
        statuses = body.get("model_version_status", []) if isinstance(body, dict) else []
        return frozenset(
            int(s["version"])
            for s in statuses
            if isinstance(s, dict)
            and s.get("state") == "AVAILABLE"
            and str(s.get("version")).isdigit()
        )


class TorchServeVersions(_HttpStatus):
    """TorchServe's management API, `GET /models/{m}` (all versions) with the management
    key: `[{"modelVersion": "2", "workers": [{"status": "READY", ...}], ...}, ...]`."""

    framework: Framework = "pytorch"

    def __init__(
        self, bases: Sequence[str], token: TokenSource, timeout_s: float = STATUS_TIMEOUT_S
    ) -> None:
        super().__init__(bases, timeout_s)
        self.token = token

    def url(self, base: str, model: str) -> str:
        return f"{base}/models/{quote(model, safe='')}/all"

    def headers(self) -> dict[str, str]:
        return self.token.headers()

    def parse(self, body: object) -> frozenset[int]:
        entries = body if isinstance(body, list) else []
        return frozenset(
            int(e["modelVersion"])
            for e in entries
            if isinstance(e, dict)
            and str(e.get("modelVersion")).isdigit()
            and any(w.get("status") == "READY" for w in e.get("workers", []))
        )


class OipVersions(_HttpStatus):
    """An OIP server's model metadata over REST, `GET /v2/models/{m}`:
    `{"name": "m", "versions": ["1", "2"], "platform": ..., "inputs": ..., ...}`."""

    def __init__(
        self, bases: Sequence[str], framework: Framework, timeout_s: float = STATUS_TIMEOUT_S
    ) -> None:
        super().__init__(bases, timeout_s)
        self.framework = framework

    def url(self, base: str, model: str) -> str:
        return f"{base}/v2/models/{quote(model, safe='')}"

    def parse(self, body: object) -> frozenset[int]:
        versions = body.get("versions", []) if isinstance(body, dict) else []
        return frozenset(int(v) for v in versions if str(v).isdigit())


class CatalogFollower:
    """Keeps one `Catalog` in step with the manifest and the backends.

    Args:
        catalog: the catalog to update (its models stay the ones it started with: a model
            new to the manifest needs a restart, its policy and metrics are set at start).
        store: the model store whose `manifest.json` is re-read when it changes.
        sources: one per followed framework; a framework without one is not followed.
        server_sources: per (framework, server) that an arm may name beside the
            framework's configured server, what that server serves (`ModelInfo.on_servers`).
        poll_s: seconds between two looks at every model.
        limits, version_labels: as for `Catalog.from_store`.
        clock: epoch seconds, for `Catalog.since`.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: Path,
        sources: Sequence[ServedVersions],
        poll_s: float = 1.0,
        limits: LimitsSettings | None = None,
        version_labels: Mapping[str, Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.time,
        server_sources: Sequence[tuple[ServerKind, ServedVersions]] = (),
    ) -> None:
        self.catalog = catalog
        self.server_sources = list(server_sources)
        self._served_on: dict[tuple[str, Framework, ServerKind], frozenset[int]] = {}
        self.store = Path(store)
        self.sources = list(sources)
        self.poll_s = poll_s
        self.limits = limits
        self.version_labels = version_labels
        self.clock = clock
        self._exports = {name: catalog.get(name) for name in catalog.names}
        self._manifest_mtime = self._mtime()
        self._served: dict[tuple[str, Framework], frozenset[int]] = {}
        self._looks: dict[str, asyncio.Future[bool]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """One look at every model (so a worker starts truthful), then poll in the background."""
        self.catalog.attach(self.look)
        await self.look_all()
        self._task = asyncio.create_task(self._poll(), name="catalog-follower")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for source in [*self.sources, *(s for _, s in self.server_sources)]:
            await source.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.look_all()
            except Exception:  # the follower must outlive any one bad answer
                logger.exception("catalog follower: look failed")

    async def look_all(self) -> bool:
        """Re-read the manifest if it changed, then look at every model; True on a change."""
        self._reread_manifest()
        changed = await asyncio.gather(*(self.look(model) for model in self.catalog.names))
        return any(changed)

    async def look(self, model: str) -> bool:
        """Ask the backends about `model` now; concurrent callers share one look."""
        pending = self._looks.get(model)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._looks[model] = future
        try:
            result = await self._look(model)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._looks[model]
        future.set_result(result)
        return result

    async def _look(self, model: str) -> bool:
        answers = await asyncio.gather(*(s.versions(model) for s in self.sources))
        for source, served in zip(self.sources, answers, strict=True):
            if served is not None:
                self._served[(model, source.framework)] = served
        on = await asyncio.gather(*(s.versions(model) for _, s in self.server_sources))
        for (server, source), served in zip(self.server_sources, on, strict=True):
            if served is not None:
                self._served_on[(model, source.framework, server)] = served
        return self.catalog.update(self._followed(model), self.clock())

    def _followed(self, model: str) -> ModelInfo:
        """The manifest's model narrowed to what the followed backends serve."""
        exports = self._exports[model]
        versions: dict[int, tuple[Framework, ...]] = {}
        for version, frameworks in sorted(exports.versions.items()):
            serving = tuple(fw for fw in frameworks if self._serves(model, fw, version))
            if serving:
                versions[version] = serving
        on_servers = dict(exports.on_servers)
        for (name, framework, server), served in self._served_on.items():
            if name == model:
                on_servers[(framework, server)] = served
        return replace(exports, versions=versions, followed=True, on_servers=on_servers)

    def _serves(self, model: str, framework: Framework, version: int) -> bool:
        served = self._served.get((model, framework))
        return True if served is None else version in served  # unheard of: as exported

    def _mtime(self) -> int | None:
        try:
            return manifest_path(self.store).stat().st_mtime_ns
        except OSError:
            return None

    def _reread_manifest(self) -> None:
        mtime = self._mtime()
        if mtime is None or mtime == self._manifest_mtime:
            return
        try:
            fresh = Catalog.from_manifest(
                load_manifest(self.store), self.limits, self.version_labels
            )
        except (ManifestError, ValueError) as exc:  # keep serving what was known
            logger.warning("catalog follower: manifest not re-read: %s", exc)
            return
        self._manifest_mtime = mtime
        for name in self.catalog.names:
            if name in fresh.names:
                self._exports[name] = fresh.get(name)


def build_follower(settings: GatewaySettings, catalog: Catalog) -> CatalogFollower | None:
    """The follower the settings ask for, per framework the server its arm calls
    (`servers`): TF Serving's REST replicas (`tensorflow.rest`, whatever the transport),
    TorchServe's management replicas (`pytorch.management`), or an OIP server's REST
    replicas (`oip.rest`); None when `catalog_poll_s` is 0 or no arm's server has a status
    address."""
    sources = [
        source
        for fw in FRAMEWORKS
        if (source := served_versions_for(settings, settings.server_of(fw), fw)) is not None
    ]
    if settings.catalog_poll_s <= 0 or not sources:
        return None
    return CatalogFollower(
        catalog,
        settings.model_store,
        sources,
        settings.catalog_poll_s,
        settings.limits,
        settings.version_labels,
        server_sources=server_sources_for(settings),
    )


def server_sources_for(settings: GatewaySettings) -> list[tuple[ServerKind, ServedVersions]]:
    """What follows each server an arm may name beside pytorch's configured one (the
    servers `factory.build_server_upstreams` builds a client for)."""
    found: list[tuple[ServerKind, ServedVersions]] = []
    for server in ("torchserve", "oip"):
        if server == settings.server_of("pytorch"):
            continue
        if not settings.upstream_settings(server).addresses:
            continue
        source = served_versions_for(settings, server, "pytorch")
        if source is not None:
            found.append((server, source))
    return found


def served_versions_for(
    settings: GatewaySettings, server: ServerKind, framework: Framework
) -> ServedVersions | None:
    """What follows the versions `server` serves for `framework`'s arm (its status address
    from the settings block of that server kind); None when the settings give none."""
    if server == "oip":
        return OipVersions(settings.oip.rest, framework) if settings.oip.rest else None
    if server == "tfserving":
        rest = settings.tensorflow.rest
        return TFServingVersions(rest) if rest else None
    torch = settings.pytorch
    if not torch.management:
        return None
    token = torch.token.get_secret_value() if torch.token else None
    key = TokenSource(None if torch.token_file else token, torch.token_file, kind="management")
    return TorchServeVersions(torch.management, key)
