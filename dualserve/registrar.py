"""The registrar: TorchServe follows TF Serving's versions, and the stack records who serves what.

TF Serving picks up a new SavedModel version by itself (it polls the model store); TorchServe
0.12 registers nothing after start. `dualserve up` therefore starts this one small process
next to the backends (`run/registrar/`, stopped by `dualserve down`). Each `poll_s` it:

1. asks TF Serving which versions of each model are AVAILABLE (model status API);
2. registers with TorchServe (management API, management key) every such version the
   manifest records a `.mar` for and TorchServe does not have yet, after checking the
   archive against the manifest's sha256 (`backends.artifacts`), and makes the newest READY
   version TorchServe's default;
3. writes `run/registrar/models.json`: per model and framework the versions served and
   since when, the version routed (the gateway's `latest` rule, `gateway.catalog.routed`)
   and since when. `dualserve models` and `dualserve status` print it.

Why a process of its own, not the gateway: the gateway runs N workers (and N replicas in a
cluster) and each follows the backends read-only; registering must happen once per
TorchServe, by whoever owns the model store and TorchServe's management key, which is the
stack. One registrar per `dualserve up`, so only one process registers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backends.artifacts import verify_archives
from backends.process import LaunchError
from backends.torchserve.config import ModelArchive, TorchServeSettings
from backends.torchserve.management import Management, ManagementError
from gateway.catalog import routed
from trainers.errors import ManifestError
from trainers.manifest import Manifest, load_manifest

NAME = "registrar"
RECORD_FILE = "models.json"
logger = logging.getLogger("dualserve.registrar")


@dataclass(frozen=True)
class Backends:
    """Where the registrar looks and registers."""

    tf_rest: str
    torch: Management


def tf_versions(rest: str, model: str, timeout: float = 2.0) -> set[int] | None:
    """The AVAILABLE versions of `model` in TF Serving (`GET /v1/models/{m}`); None when
    it does not answer."""
    try:
        response = httpx.get(f"{rest}/v1/models/{model}", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code == 404:
        return set()
    if response.status_code != 200:
        return None
    statuses = response.json().get("model_version_status", [])
    return {
        int(s["version"])
        for s in statuses
        if s.get("state") == "AVAILABLE" and str(s.get("version")).isdigit()
    }


def oip_versions(rest: str, model: str, timeout: float = 2.0) -> set[int] | None:
    """The versions of `model` an Open Inference Protocol server serves (its model
    metadata, `GET /v2/models/{m}`: `versions`); None when it does not answer."""
    try:
        response = httpx.get(f"{rest}/v2/models/{model}", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code in (400, 404):  # the bundled server and Triton: no such model
        return set()
    if response.status_code != 200:
        return None
    return {int(v) for v in response.json().get("versions", []) if str(v).isdigit()}


def torch_versions(torch: Management, model: str) -> set[int] | None:
    """The versions of `model` with a READY TorchServe worker; None when it does not answer."""
    try:
        return {s.version for s in torch.versions(model) if s.ready}
    except (ManagementError, OSError, ValueError):
        return None


class Registrar:
    """One look per `step`: register what TF Serving serves, record what both serve.

    Args:
        store: the model store (manifest and `.mar` files).
        backends: TF Serving's REST base and TorchServe's management API.
        record_file: where the per-model record is written (atomically).
        settings: the TorchServe settings new versions are registered with.
        clock: epoch seconds for the record's "since" times.
    """

    def __init__(
        self,
        store: Path,
        backends: Backends,
        record_file: Path,
        settings: TorchServeSettings | None = None,
        clock: Any = time.time,
    ) -> None:
        self.store = store
        self.backends = backends
        self.record_file = record_file
        self.settings = settings or TorchServeSettings()
        self.clock = clock
        self.record: dict[str, Any] = _read(record_file)
        self._refused: set[tuple[str, int]] = set()

    def step(self) -> None:
        try:
            manifest = load_manifest(self.store)
        except ManifestError as exc:
            logger.warning("manifest unreadable, nothing registered: %s", exc)
            return
        for model in sorted(manifest.models):
            self._model(manifest, model)
        _write(self.record_file, self.record)

    def _model(self, manifest: Manifest, model: str) -> None:
        tf = tf_versions(self.backends.tf_rest, model)
        if tf is None:
            return
        self._register_missing(manifest, model, tf)
        torch = torch_versions(self.backends.torch, model)
        if torch is None:
            return
        self._make_newest_default(model, torch)
        self._note(manifest, model, {"tensorflow": tf, "pytorch": torch})

    def _register_missing(self, manifest: Manifest, model: str, tf: set[int]) -> None:
        try:
            registered = {s.version for s in self.backends.torch.versions(model)}
        except (ManagementError, OSError, ValueError) as exc:
            logger.warning("TorchServe does not answer: %s", exc)
            return
        for version in sorted(tf - registered):
            archive = _archive(manifest, model, version)
            if archive is None or (model, version) in self._refused:
                continue
            try:
                verify_archives(self.store, [archive])  # a .mar runs code: check it first
                self.backends.torch.register(model, archive.mar, self.settings)
                logger.info("registered %s version %d (%s)", model, version, archive.mar)
            except (LaunchError, ManagementError) as exc:
                self._refused.add((model, version))  # logged once, not every poll
                logger.error("%s version %d not registered: %s", model, version, exc)

    def _make_newest_default(self, model: str, torch: set[int]) -> None:
        if not torch:
            return
        try:
            if self.backends.torch.default_version(model) != max(torch):
                self.backends.torch.set_default(model, max(torch))
        except ManagementError as exc:
            logger.warning("%s: default version not moved: %s", model, exc)

    def _note(self, manifest: Manifest, model: str, served: dict[str, set[int]]) -> None:
        """Record served versions and the routed one, each with the time it first held."""
        now = self.clock()
        entry = self.record.setdefault(model, {})
        recorded = set(manifest.models[model].versions)
        for framework, versions in served.items():
            known = entry.get(framework, {}).get("since", {})
            since = {str(v): known.get(str(v), now) for v in sorted(versions)}
            entry[framework] = {"served": sorted(versions), "since": since}
        in_manifest = {fw: {v for v in vs if str(v) in recorded} for fw, vs in served.items()}
        now_routed = routed(in_manifest)
        if entry.get("routed") != now_routed or "routed_since" not in entry:
            entry["routed"], entry["routed_since"] = now_routed, now
        entry["checked"] = now

    def run(self, poll_s: float) -> None:
        while True:
            try:
                self.step()
            except Exception:  # one bad look must not end the registrar
                logger.exception("registrar step failed")
            time.sleep(poll_s)


def _archive(manifest: Manifest, model: str, version: int) -> ModelArchive | None:
    entry = manifest.models[model].versions.get(str(version))
    artifact = entry.frameworks.get("pytorch") if entry else None
    if artifact is None or artifact.mar is None:
        return None
    return ModelArchive(name=model, mar=Path(artifact.mar).name, version=str(version))


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _write(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_record(run_dir: Path) -> dict[str, Any]:
    """What the registrar last recorded (`{}` before its first look)."""
    return _read(Path(run_dir) / NAME / RECORD_FILE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dualserve.registrar")
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True, help="the stack's run dir")
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll call otherwise
    tf = json.loads((args.run_dir / "tfserving" / "tfserving.json").read_text())
    ts = json.loads((args.run_dir / "torchserve" / "torchserve.json").read_text())["endpoints"]
    backends = Backends(tf["rest"], Management(ts["management"], Path(ts["token_file"])))
    record = args.run_dir / NAME / RECORD_FILE
    Registrar(args.model_store.resolve(), backends, record).run(args.poll_s)


if __name__ == "__main__":
    main()
