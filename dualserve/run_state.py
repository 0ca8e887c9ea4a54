"""`run/state.json`: what `dualserve up` started and where it answers, as typed models.

`dualserve up` is the file's one writer (`write_state`, once everything is ready); the
load tests, the benchmarks, `dualserve status` and the integration tests read it through
`read_state`, and use the models' attributes, never the file's keys. The models live
here, beside the CLI that owns the run directory, not in `gateway/`: the gateway process
never reads the file (`up` hands it its own YAML, `gateway.settings.write_settings`).

Every model forbids unknown fields and requires the ones it names, so a file from
another version, or edited by hand, fails with a `RunStateError` naming the field
(e.g. `run/state.json: gateway.rest: Field required`), not a `KeyError` later on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

STATE_FILE = "state.json"


class RunStateError(ValueError):
    """`state.json` does not hold what `dualserve up` writes (the message names the fields)."""


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorflowState(_Contract):
    """Where TF Serving answers (`backends.tfserving.launcher.TFServingEndpoints`)."""

    rest: str
    """Base REST URL, `http://127.0.0.1:P`."""
    grpc: str
    """gRPC target, `127.0.0.1:P`."""
    metrics: str | None = None
    """Full URL of the Prometheus page."""
    binary: str | None = None
    """`tensorflow_model_server` (the real binary) or `bundled`."""
    pid: int | None = None


class PytorchState(_Contract):
    """Where TorchServe answers (`backends.torchserve.launcher.TorchServeEndpoints`)."""

    inference: str
    """Inference API base URL, `http://127.0.0.1:P`."""
    management: str
    """Management API base URL."""
    grpc: str
    """gRPC inference target, `127.0.0.1:P`."""
    token_file: Path
    """TorchServe's `key_file.json` (token authorization)."""
    metrics: str | None = None
    """Metrics API base URL (the page is `{metrics}/metrics`)."""
    pid: int | None = None


class OipState(_Contract):
    """Where the bundled OIP server answers (`backends.oip.launcher.OipEndpoints`): the
    `.pt2` exports over the Open Inference Protocol."""

    rest: str
    """Base REST URL, `http://127.0.0.1:P` (`/v2/...`)."""
    grpc: str
    """gRPC target, `127.0.0.1:P` (`inference.GRPCInferenceService`)."""
    metrics: str | None = None
    """Full URL of the Prometheus page."""
    pid: int | None = None


class GatewayState(_Contract):
    """Where the gateway answers (`gateway.processes.launcher.GatewayEndpoints`)."""

    rest: str
    """Base REST URL, `http://127.0.0.1:P`."""
    grpc: str | None = None
    """gRPC ingress target, `127.0.0.1:P`; None without one."""
    admin_token_file: Path
    """The admin API's bearer token."""
    config_file: Path
    """The gateway YAML `up` wrote (`gateway.settings.write_settings`)."""
    pid: int
    """The supervisor's pid when there are several workers, else the one process's."""
    workers: int
    worker_pids: tuple[int, ...]


class RegistrarState(_Contract):
    """The registrar (`dualserve.registrar`): registers each version TF Serving serves
    with TorchServe, and records since when each version is served and routed."""

    pid: int | None = None
    record: Path
    """Its record of served and routed versions (`models.json`)."""


class RunState(_Contract):
    """`run/state.json`: the parts `dualserve up` started, all ready (`oip` only where
    the model store holds `.pt2` exports)."""

    tensorflow: TensorflowState
    pytorch: PytorchState
    gateway: GatewayState
    registrar: RegistrarState | None = None
    oip: OipState | None = None

    def parts(self) -> dict[str, _Contract]:
        """The parts by name (`tensorflow`, `pytorch`, `gateway`, `registrar`, `oip` if any)."""
        parts: dict[str, _Contract | None] = {
            "tensorflow": self.tensorflow, "pytorch": self.pytorch,
            "gateway": self.gateway, "registrar": self.registrar, "oip": self.oip,
        }  # fmt: skip
        return {name: part for name, part in parts.items() if part is not None}


class StackStatus(_Contract):
    """What runs now (`dualserve status`): a part that does not run is None."""

    tensorflow: TensorflowState | None = None
    pytorch: PytorchState | None = None
    gateway: GatewayState | None = None
    registrar: RegistrarState | None = None
    oip: OipState | None = None

    def running(self) -> dict[str, _Contract]:
        """The parts that run, by name (`tensorflow`, `pytorch`, `gateway`, `registrar`, `oip`)."""
        parts: dict[str, _Contract | None] = {
            "tensorflow": self.tensorflow, "pytorch": self.pytorch,
            "gateway": self.gateway, "registrar": self.registrar, "oip": self.oip,
        }  # fmt: skip
        return {name: part for name, part in parts.items() if part is not None}

    def as_json(self) -> str:
        """The `dualserve status --json` document: running parts only."""
        return json.dumps(self.as_document(), indent=2)

    def as_document(self) -> dict[str, object]:
        """The running parts as JSON-ready dicts."""
        return {n: p.model_dump(mode="json") for n, p in self.running().items()}


def read_state(run_dir: Path) -> RunState:
    """The state `dualserve up` wrote in `run_dir`.

    Raises:
        FileNotFoundError: no `state.json` there (nothing was started).
        RunStateError: the file is not JSON, or a field is missing, unknown or mistyped.
    """
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `dualserve up` first")
    try:
        return RunState.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise RunStateError(f"{path}: {_fields(exc)}") from None


def write_state(run_dir: Path, state: RunState) -> Path:
    """Write `state` to `run_dir/state.json` atomically (a reader never sees half of it)."""
    path = Path(run_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _fields(exc: ValidationError) -> str:
    """`gateway.rest: Field required; ...`: every failing field by its dotted path."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(document)'}: {error['msg']}"
        for error in exc.errors()
    )
