"""The server's model repository: which `.pt2` versions it serves, loaded and followed.

The source of truth is the model store's `manifest.json` (written only by the trainers):
a version is served when its PyTorch entry records an ExportedProgram (`pt2`). Like TF
Serving's `latest { num_versions: N }` policy, the newest `num_versions` of each model are
loaded and older ones unloaded, so the version routed now stays loaded while the next one
lands. `poll_once` re-reads the manifest when it changed (its size and mtime); the server
calls it every `poll_s`.

Loading is safe by construction: a program is read only from inside the model store and
only after its sha256 matched the manifest's (`trainers.exports.torch_export.load_program`), since
`torch.export.load` unpickles. A version whose file is missing, outside the store or does
not match is UNAVAILABLE with that reason in the repository index, never loaded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backends.oip.errors import NotFound, Unavailable
from trainers.errors import ManifestError, TrainerError
from trainers.manifest import Manifest, TensorSpec, TorchExport, VersionEntry, load_manifest

log = logging.getLogger("oip.repository")
DATATYPES = {"float32": "FP32", "int64": "INT64", "float64": "FP64", "int32": "INT32"}
"""Manifest dtypes -> OIP datatypes (KServe's Open Inference Protocol, "Tensor Data")."""
PLATFORM = "pytorch_torch_export"


@dataclass(frozen=True)
class TensorMeta:
    """One input or output as model metadata gives it; -1 in `shape` is the batch."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass
class ServedVersion:
    """One loaded version: its signature and the program's module (numpy in, numpy out)."""

    name: str
    version: int
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]
    module: Any
    path: Path

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the program; `inputs` already checked against `inputs` (names, types, shapes)."""
        import torch

        with torch.no_grad():
            # the program was traced with positional inputs, in the signature's order
            args = [torch.from_numpy(np.ascontiguousarray(inputs[m.name])) for m in self.inputs]
            outputs = self.module(*args)
        return {name: value.detach().cpu().numpy() for name, value in outputs.items()}


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index (Triton's `RepositoryIndex`): READY or UNAVAILABLE."""

    name: str
    version: int
    state: str
    reason: str = ""


Loader = Callable[[Path, str], Any]


def load_program(path: Path, sha256: str) -> Any:
    """The default loader: the sha256-checked ExportedProgram's module."""
    from trainers.exports.torch_export import load_program as load

    return load(path, sha256)


@dataclass
class ModelRepository:
    """The served versions of every model in `store`'s manifest that has `.pt2` exports.

    Args:
        store: the model store (its `manifest.json` and artifacts).
        num_versions: how many of each model's newest versions to keep loaded.
        loader: `(path, sha256) -> module`; tests inject a fake.
    """

    store: Path
    num_versions: int = 2
    loader: Loader = load_program
    _served: dict[str, dict[int, ServedVersion]] = field(default_factory=dict)
    _failed: dict[tuple[str, int], str] = field(default_factory=dict)
    _seen: tuple[int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def poll_once(self) -> bool:
        """Re-read the manifest if it changed and load or unload versions; True if it did.

        Raises:
            ManifestError: the manifest is missing or corrupt (the server's first load
                fails with it; a later poll logs it and keeps what it serves).
        """
        path = Path(self.store) / "manifest.json"
        stat = path.stat() if path.is_file() else None
        seen = (stat.st_size, stat.st_mtime_ns) if stat else None
        if seen is not None and seen == self._seen:
            return False
        manifest = load_manifest(Path(self.store))
        self._apply(manifest)
        self._seen = seen
        return True

    def _apply(self, manifest: Manifest) -> None:
        wanted = self.wanted(manifest)
        for (model, version), entry in wanted.items():
            if version not in self._served.get(model, {}) and (model, version) not in self._failed:
                self._load(model, entry)
        with self._lock:
            for model, versions in self._served.items():
                for version in [v for v in versions if (model, v) not in wanted]:
                    del versions[version]
                    log.info("unloaded %s version %d", model, version)
            self._failed = {k: why for k, why in self._failed.items() if k in wanted}

    def wanted(self, manifest: Manifest) -> dict[tuple[str, int], VersionEntry]:
        """The newest `num_versions` versions of each model that record a `.pt2` program."""
        chosen: dict[tuple[str, int], VersionEntry] = {}
        for model, entry in manifest.models.items():
            versions = sorted(
                (int(v) for v, e in entry.versions.items() if _program(e) is not None),
                reverse=True,
            )
            for version in versions[: self.num_versions]:
                chosen[(model, version)] = entry.versions[str(version)]
        return chosen

    def _load(self, model: str, entry: VersionEntry) -> None:
        export = _program(entry)
        assert export is not None  # wanted() chose only versions with a program
        try:
            path = self._inside_store(export.artifact)
            module = self.loader(path, export.sha256)
        except (TrainerError, OSError, RuntimeError, ValueError) as exc:
            log.error("cannot load %s version %d: %s", model, entry.version, exc)
            with self._lock:
                self._failed[(model, entry.version)] = str(exc)
            return
        served = ServedVersion(
            model,
            entry.version,
            _metas(entry.signature.inputs),
            _metas(entry.signature.outputs),
            module,
            path,
        )
        with self._lock:
            self._served.setdefault(model, {})[entry.version] = served
        log.info("loaded %s version %d from %s", model, entry.version, path)

    def _inside_store(self, artifact: str) -> Path:
        root = Path(self.store).resolve()
        path = (root / artifact).resolve()
        if not path.is_relative_to(root):
            raise TrainerError(f"{artifact} lies outside the model store {root}; not loaded")
        return path

    def get(self, model: str, version: int | None = None) -> ServedVersion:
        """The version asked for, or the newest served one.

        Raises:
            NotFound: the model or that version is not in the repository.
            Unavailable: the version is recorded but could not be loaded.
        """
        with self._lock:
            versions = self._served.get(model, {})
            if version is None and versions:
                return versions[max(versions)]
            if version is not None and version in versions:
                return versions[version]
            failed = self._failed.get((model, version or 0))
        if failed:  # the reason (with its file path) is in the index and the log, not here
            raise Unavailable(
                f"model '{model}' version {version} failed to load (see the repository index)"
            )
        if version is None or not versions:
            raise NotFound(f"unknown model '{model}'")
        raise NotFound(f"model '{model}' has no version {version} (serves {sorted(versions)})")

    def index(self) -> list[IndexEntry]:
        """Every version the repository knows, READY or UNAVAILABLE (with the reason)."""
        with self._lock:
            ready = [IndexEntry(m, v, "READY") for m, vs in self._served.items() for v in vs]
            failed = [IndexEntry(m, v, "UNAVAILABLE", why) for (m, v), why in self._failed.items()]
        return sorted(ready + failed, key=lambda e: (e.name, e.version))

    def models(self) -> list[str]:
        with self._lock:
            return sorted(m for m, vs in self._served.items() if vs)


def _program(entry: VersionEntry) -> TorchExport | None:
    pytorch = entry.frameworks.get("pytorch")
    return pytorch.pt2 if pytorch is not None else None


def _metas(specs: list[TensorSpec]) -> tuple[TensorMeta, ...]:
    return tuple(
        TensorMeta(s.name, DATATYPES.get(s.dtype, s.dtype.upper()), tuple(s.shape)) for s in specs
    )


__all__ = ["IndexEntry", "ManifestError", "ModelRepository", "ServedVersion", "TensorMeta"]
