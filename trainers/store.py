"""Paths and locking for the model store (the TF Serving layout plus TorchServe archives)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainers.manifest import Manifest


@dataclass(frozen=True)
class ModelStore:
    """`root/tensorflow/<model>/<v>/`, `root/torch/<model>/<v>/model.pt` (TorchScript)
    with `model.pt2` (ExportedProgram) and `model.<device>.aoti.pt2` beside it,
    `root/torchserve/<model>.mar` (latest) and `<model>.v<v>.mar` (every version)."""

    root: Path

    def tf_dir(self, model: str, version: int) -> Path:
        return self.root / "tensorflow" / model / str(version)

    def torch_file(self, model: str, version: int) -> Path:
        return self.root / "torch" / model / str(version) / "model.pt"

    def program_file(self, model: str, version: int) -> Path:
        """The `torch.export` ExportedProgram beside the TorchScript file."""
        return self.torch_file(model, version).with_name("model.pt2")

    def mar_dir(self) -> Path:
        return self.root / "torchserve"

    def versioned_mar(self, model: str, version: int) -> Path:
        return self.mar_dir() / f"{model}.v{version}.mar"

    def latest_mar(self, model: str) -> Path:
        return self.mar_dir() / f"{model}.mar"

    def report_file(self, model: str, version: int) -> Path:
        return self.root / "reports" / f"{model}-v{version}.md"

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def artifact_versions(self, model: str) -> set[int]:
        """Version directories on disk for `model`, in either framework."""
        found: set[int] = set()
        for parent in (self.root / "tensorflow" / model, self.root / "torch" / model):
            if parent.is_dir():
                found |= {int(p.name) for p in parent.iterdir() if p.name.isdigit()}
        return found

    def has_artifacts(self) -> bool:
        return any(
            (self.root / kind).is_dir() and any((self.root / kind).iterdir())
            for kind in ("tensorflow", "torch", "torchserve")
        )

    def next_version(self, manifest: Manifest, model: str) -> int:
        """One past the highest version in the manifest or on disk, so nothing is overwritten."""
        entry = manifest.models.get(model)
        known = {int(v) for v in entry.versions} if entry else set()
        return max(known | self.artifact_versions(model), default=0) + 1

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise training runs that share this store (version numbers, manifest)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
