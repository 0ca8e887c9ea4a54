"""Which versions each backend serves, which one is routed, and retiring a version.

`dualserve models` (and `dualserve status`) ask the running backends now (TF Serving's model
status API, TorchServe's management API) and add the registrar's record of since when
(`dualserve.registrar`). `dualserve retire MODEL VERSION` takes a version out of both
backends without a failed request:

1. it refuses the version routed now (the one requests naming no version get: the newest
   both frameworks serve): land a newer one first;
2. TF Serving, whose policy serves the newest version directories (`latest`), drops a
   version when its directory leaves: the directory moves to `<store>/retired/tensorflow/`
   (with any older directory TF Serving no longer serves, which the policy would otherwise
   bring back), and retire waits until TF Serving no longer lists it AVAILABLE (its poll,
   2 s; its in-flight requests finish on the unloaded version);
3. TorchServe unregisters it (`DELETE /models/<m>/<v>`), after moving its default version
   to the newest other one if it was the default.
The gateway's workers stop routing the version one catalog poll after each backend drops it.

Where the stack runs the bundled OIP server (`state.oip`), `dualserve models` shows what it
serves too (row `pytorch@oip`: an arm naming `server: oip` calls it); it is not counted in
the routed version (the framework's own servers are). `retire` leaves it alone: it serves
the manifest's newest two `.pt2` versions, so a retired one leaves it when newer ones land
(the retire's output says so when it still serves the version).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.torchserve.management import Management, ManagementError
from dualserve.registrar import oip_versions, read_record, tf_versions, torch_versions
from dualserve.run_state import StackStatus
from gateway.catalog import routed
from trainers.manifest import load_manifest

RETIRED_DIR = "retired"
OIP_ROW = "pytorch@oip"
"""`dualserve models`' row of the bundled OIP server (pytorch's `.pt2` exports)."""


class RetireError(RuntimeError):
    """The version cannot be retired now; the message says why."""


@dataclass
class ModelView:
    """One model now: per framework the versions served, the routed version, since when."""

    model: str
    served: dict[str, list[int]]
    routed: int | None
    routed_since: float | None = None
    since: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "served": self.served,
            "routed": self.routed,
            "routed_since": self.routed_since,
            "since": self.since,
        }


def _backends(state: StackStatus) -> tuple[str, Management]:
    tf, torch = state.tensorflow, state.pytorch
    if tf is None or torch is None:
        raise RetireError("the backends are not running (start them with `dualserve up`)")
    return tf.rest, Management(torch.management, Path(torch.token_file))


def model_views(store: Path, run_dir: Path, state: StackStatus) -> list[ModelView]:
    """Every manifest model as both backends serve it now, with the registrar's times."""
    tf_rest, torch = _backends(state)
    record = read_record(run_dir)
    views = []
    for model in sorted(load_manifest(store).models):
        served = {
            "tensorflow": sorted(tf_versions(tf_rest, model) or ()),
            "pytorch": sorted(torch_versions(torch, model) or ()),
        }
        entry = record.get(model, {})
        now_routed = routed(served)  # the frameworks' own servers, before the OIP row
        if state.oip is not None:
            served[OIP_ROW] = sorted(oip_versions(state.oip.rest, model) or ())
        since = {fw: entry.get(fw, {}).get("since", {}) for fw in served}
        routed_since = entry.get("routed_since") if entry.get("routed") == now_routed else None
        views.append(ModelView(model, served, now_routed, routed_since, since))
    return views


def retire(
    store: Path, state: StackStatus, model: str, version: int, timeout: float = 60.0
) -> list[str]:
    """Take `version` of `model` out of both backends; returns what was done, in order.

    Raises:
        RetireError: the version is the routed one, or unknown to both backends, or TF
            Serving still serves it after `timeout` seconds.
    """
    tf_rest, torch = _backends(state)
    tf = tf_versions(tf_rest, model) or set()
    pt = torch_versions(torch, model) or set()
    if version not in tf | pt:
        raise RetireError(f"neither backend serves {model} version {version}")
    if routed({"tensorflow": tf, "pytorch": pt}) == version:
        raise RetireError(
            f"{model} version {version} is the routed version (requests naming no version"
            " get it); land a newer version in both backends first"
        )
    done = _retire_tf(store, tf_rest, model, version, tf, timeout)
    done += _retire_torch(torch, model, version)
    if state.oip is not None and version in (oip_versions(state.oip.rest, model) or set()):
        done.append(
            f"{OIP_ROW}: still serves {model} version {version} (it serves the manifest's"
            " newest two .pt2 versions; it leaves when newer ones land)"
        )
    return done


def _retire_tf(
    store: Path, rest: str, model: str, version: int, served: set[int], timeout: float
) -> list[str]:
    base = store / "tensorflow" / model
    retired = store / RETIRED_DIR / "tensorflow" / model
    moving = [
        p
        for p in sorted(base.iterdir())
        if p.is_dir() and p.name.isdigit()
        and (int(p.name) == version or (int(p.name) < version and int(p.name) not in served))
    ]  # fmt: skip
    done = []
    for path in moving:
        retired.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), str(retired / path.name))
        done.append(f"tensorflow: moved {path} to {retired / path.name}")
    deadline = time.monotonic() + timeout
    while version in (tf_versions(rest, model) or set()):
        if time.monotonic() > deadline:
            raise RetireError(f"TF Serving still serves {model} version {version}")
        time.sleep(0.2)
    return [*done, f"tensorflow: {model} version {version} no longer served"]


def _retire_torch(torch: Management, model: str, version: int) -> list[str]:
    registered = {s.version for s in torch.versions(model)}
    if version not in registered:
        return []
    others = sorted(registered - {version})
    try:
        if torch.default_version(model) == version and others:
            torch.set_default(model, others[-1])
        torch.unregister(model, version)
    except ManagementError as exc:
        raise RetireError(str(exc)) from exc
    return [f"pytorch: {model} version {version} unregistered"]
