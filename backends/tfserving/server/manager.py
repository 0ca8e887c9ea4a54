"""Which versions of which models are served: discovery, load, warm-up, swap, unload.

A poller thread looks at every model's base path each `--file_system_poll_wait_seconds`,
applies the version policy, loads and warms new versions, then swaps the serving map in
one assignment. Readers on the event loop only ever read that map, so a version switch
never blocks a request; a retired version object stays alive until its in-flight
requests finish (they hold a reference), then the garbage collector frees it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backends.tfserving.server.errors import InvalidArgument, NotFound, servable_not_found
from backends.tfserving.model_config import ModelConfig
from backends.tfserving.server.signature import ModelSpec, SignatureInfo

log = logging.getLogger("tfserving.manager")
MAX_LOAD_ATTEMPTS = 5  # like TF Serving's --max_num_load_retries (+1), one per poll


class LoadedVersion(Protocol):
    """What the manager needs from a loaded version (the real one is `Servable`)."""

    name: str
    version: int
    signatures: dict[str, SignatureInfo]

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]: ...

    def signature_def_map(self) -> Any: ...

    def metadata_json(self) -> dict[str, Any]: ...


Loader = Callable[[str, int, Path], LoadedVersion]


@dataclass(frozen=True)
class VersionStatus:
    """One version's state as GetModelStatus reports it."""

    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END
    error_code: str = "OK"
    error_message: str = ""


def versions_on_disk(base_path: Path) -> list[int]:
    """Numeric version directories under a model's base path (others are ignored)."""
    try:
        entries = list(Path(base_path).iterdir())
    except OSError:
        return []
    return sorted(
        int(p.name) for p in entries if p.is_dir() and p.name.isdigit() and int(p.name) > 0
    )


class ModelManager:
    """Serves the aspired versions of each configured model; thread-safe reads."""

    def __init__(self, configs: Iterable[ModelConfig], loader: Loader) -> None:
        self.configs = {c.name: c for c in configs}
        self._loader = loader
        self._serving: dict[str, dict[int, LoadedVersion]] = {n: {} for n in self.configs}
        self._states: dict[str, dict[int, VersionStatus]] = {n: {} for n in self.configs}
        self._failures: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()  # one reconcile at a time; readers never take it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reading (event loop) ----
    def resolve(self, spec: ModelSpec) -> LoadedVersion:
        """The servable a request addresses: latest, a specific version or a label."""
        if spec.name not in self.configs:
            raise servable_not_found(spec.name, spec.version)
        version = spec.version if spec.label is None else self._label(spec.name, spec.label)
        serving = self._serving[spec.name]
        if version is None:
            if not serving:
                raise servable_not_found(spec.name, None)
            return serving[max(serving)]
        if version not in serving:
            raise servable_not_found(spec.name, version)
        return serving[version]

    def _label(self, name: str, label: str) -> int:
        labels = self.configs[name].labels
        if label not in labels:
            raise InvalidArgument(f"Unrecognized servable version label: {label}")
        return labels[label]

    def status(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """Version states (TF Serving's GetModelStatus), newest first."""
        states = self._states.get(name)
        if not states:
            raise NotFound(f"Could not find any versions of model {name}")
        if label is not None:
            version = self._label(name, label)
        if version is None:
            return [states[v] for v in sorted(states, reverse=True)]
        if version not in states:
            raise NotFound(f"Could not find version {version} of model {name}")
        return [states[version]]

    def available(self, name: str) -> list[int]:
        return sorted(self._serving.get(name, {}))

    # ---- reconciling (poller thread) ----
    def poll_once(self) -> None:
        """Bring every model to its aspired versions; errors are logged, never raised."""
        with self._lock:
            for config in self.configs.values():
                try:
                    self._reconcile(config)
                except Exception:  # a broken model must not stop the others
                    log.exception("model %s: reconcile failed", config.name)

    def _reconcile(self, config: ModelConfig) -> None:
        aspired = config.policy.select(versions_on_disk(config.base_path))
        current = self._serving[config.name]
        loaded = {v: self._load(config, v) for v in sorted(aspired - set(current))}
        added = {v: s for v, s in loaded.items() if s is not None}
        # Availability first: keep old versions while no aspired one is serving.
        retired = set(current) - aspired if (added or aspired & set(current)) else set()
        if not added and not retired:
            return
        serving = {v: s for v, s in current.items() if v not in retired} | added
        self._serving = {**self._serving, config.name: serving}
        for version in sorted(retired):
            self._set_state(config.name, VersionStatus(version, "END"))
            log.info("Unloaded servable version {name: %s version: %d}", config.name, version)

    def _load(self, config: ModelConfig, version: int) -> LoadedVersion | None:
        key = (config.name, version)
        if self._failures.get(key, 0) >= MAX_LOAD_ATTEMPTS:
            return None
        self._set_state(config.name, VersionStatus(version, "LOADING"))
        try:
            servable = self._loader(config.name, version, config.base_path / str(version))
        except Exception as exc:
            self._failures[key] = self._failures.get(key, 0) + 1
            message = f"{type(exc).__name__}: {exc}"
            self._set_state(config.name, VersionStatus(version, "END", "UNKNOWN", message))
            log.error("Failed to load servable version {name: %s version: %d}: %s", *key, message)
            return None
        self._failures.pop(key, None)
        self._set_state(config.name, VersionStatus(version, "AVAILABLE"))
        log.info("Successfully loaded servable version {name: %s version: %d}", *key)
        return servable

    def _set_state(self, name: str, status: VersionStatus) -> None:
        self._states = {**self._states, name: {**self._states[name], status.version: status}}

    def start_polling(self, interval: float) -> None:
        """Poll in a daemon thread every `interval` seconds (<= 0: never)."""
        if interval <= 0:
            return
        self._thread = threading.Thread(target=self._poll_loop, args=(interval,), daemon=True)
        self._thread.start()

    def _poll_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
