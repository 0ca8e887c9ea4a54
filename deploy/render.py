"""Render the config files that compose and Kubernetes mount, from the local launchers' code.

One source of truth: the TF Serving files and flags come from `backends.tfserving.commandline`,
TorchServe's config.properties from `backends.torchserve.config`, the gateway's YAML from
`gateway.processes.launcher.gateway_config` (validated by `gateway.settings.GatewaySettings`), the
Triton model repositories' `config.pbtxt` from `deploy.triton` (the manifest's signatures). Only
addresses and paths differ from a local run.

    python -m deploy.render           # rewrite every generated file
    python -m deploy.render --check   # exit 1 and name the stale files (used by the tests)
    python -m deploy.render --model-store model_store   # versions from a trained store
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from backends.tfserving.commandline import TFServingSettings, server_flags, write_configs
from backends.torchserve.config import (
    ModelArchive,
    Ports,
    TorchServeSettings,
    render_config,
    worker_env,
)
from deploy import triton
from deploy.dashboard import dashboard
from dualserve.run_state import PytorchState, TensorflowState
from gateway.processes.launcher import gateway_config
from gateway.settings import GatewaySettings, settings_document

DEPLOY = Path(__file__).resolve().parent
MODELS = ("digits-cnn", "digits-mlp")
"""What `make demo` trains; the production configs serve these."""
MODEL_STORE = PurePosixPath("/models")
"""Where every container mounts the model store (read-only)."""

TF_GRPC, TF_REST = 8500, 8501
TF_CONFIG_DIR = PurePosixPath("/etc/tfserving")
TS_PORTS = Ports(
    inference=8080, management=8081, metrics=8082,
    grpc_inference=7070, grpc_management=7071, worker_base=9000,
)  # fmt: skip
TS_CONFIG = PurePosixPath("/home/model-server/config/config.properties")
TS_KEYS_DIR = PurePosixPath("/home/model-server/keys")
"""TorchServe's working directory in compose: it writes key_file.json there."""
GATEWAY_PORT = 8080
GATEWAY_GRPC_PORT = 8081
GATEWAY_DATA_DIR = PurePosixPath("/var/lib/dualserve")
"""The prediction log's SQLite folder: a writable volume in compose; unused in Kubernetes,
where every gateway replica shares base/postgres.yaml's database (`database_url` from env)."""
GATEWAY_CONFIG = PurePosixPath("/etc/dualserve/gateway.yaml")
PAYLOAD_ROWS = 16
GATEWAY_EXCLUDED = ("scikit-learn", "psutil")
"""Base dependencies the gateway never imports: the trainers' data split, the launchers'
process plumbing. Everything else in `dependencies` plus the `gateway` extra goes in."""


@dataclass(frozen=True)
class Target:
    """One deployment flavour: where the backends are and how the gateway reaches them."""

    name: str
    tfserving: str
    torchserve: str
    transport: str
    token_auth: bool
    secrets_dir: PurePosixPath


COMPOSE = Target("compose", "tfserving", "torchserve", "rest", True, PurePosixPath("/run/secrets"))
"""One replica per backend: REST as locally (the gateway's HTTP/1.1 client costs less CPU per
call than gRPC to either backend; see `gateway.settings`), TorchServe's token read from a
shared volume."""
K8S = Target(
    "k8s", "tfserving", "torchserve", "rest", False, PurePosixPath("/var/run/secrets/dualserve")
)
"""Several replicas per backend behind ClusterIP Services: REST, so kube-proxy spreads the
gateway's pooled connections over every pod (one gRPC channel would pin one pod). Each
TorchServe replica would mint its own random key, so token auth is off in the cluster and a
NetworkPolicy admits only the gateway (and Prometheus) to the backends."""


def tfserving_files(store: PurePosixPath = MODEL_STORE) -> dict[str, str]:
    """models.config, batching_parameters.txt, monitoring.config as the launcher writes them."""
    with tempfile.TemporaryDirectory() as tmp:
        files = write_configs(Path(store), Path(tmp), TFServingSettings(), list(MODELS))
        return {path.name: path.read_text(encoding="utf-8") for path in files.values()}


def tfserving_args(config_dir: PurePosixPath = TF_CONFIG_DIR) -> list[str]:
    """The `tensorflow_model_server` flags, from the launcher's own `server_flags`."""
    settings = TFServingSettings()
    files = {
        "model_config": Path(config_dir / "models.config"),
        "batching": Path(config_dir / "batching_parameters.txt"),
        "monitoring": Path(config_dir / "monitoring.config"),
    }
    return server_flags(settings, TF_GRPC, TF_REST, files)


def torchserve_settings() -> TorchServeSettings:
    """The local defaults, listening on every interface; GPUs come from `TS_NUMBER_OF_GPU`."""
    return TorchServeSettings(host="0.0.0.0", number_of_gpu=0)


def torchserve_properties(target: Target, versions: dict[str, str]) -> str:
    """config.properties rendered by the launcher's `render_config`; only the values differ."""
    archives = [ModelArchive(name=m, mar=f"{m}.mar", version=versions[m]) for m in MODELS]
    text = render_config(
        torchserve_settings(), TS_PORTS, Path(MODEL_STORE / "torchserve"), archives
    )
    if not target.token_auth:
        text = text.replace("disable_token_authorization=false", "disable_token_authorization=true")
    return text


def torchserve_command() -> list[str]:
    """The launcher's `torchserve` argv, with the container's paths."""
    return [
        "torchserve", "--start", "--foreground", "--ncs",
        "--ts-config", str(TS_CONFIG),
        "--model-store", str(MODEL_STORE / "torchserve"),
    ]  # fmt: skip


def torchserve_env() -> dict[str, str]:
    """Thread-pool sizes and config location, as the launcher sets them."""
    return {**worker_env(torchserve_settings()), "TS_CONFIG_FILE": str(TS_CONFIG)}


def gateway_yaml(target: Target) -> dict[str, Any]:
    """The gateway config, built by the local launcher's `gateway_config` with cluster addresses."""
    tensorflow = TensorflowState(
        grpc=f"{target.tfserving}:{TF_GRPC}", rest=f"http://{target.tfserving}:{TF_REST}"
    )
    pytorch = PytorchState(
        grpc=f"{target.torchserve}:{TS_PORTS.grpc_inference}",
        inference=f"http://{target.torchserve}:{TS_PORTS.inference}",
        management=f"http://{target.torchserve}:{TS_PORTS.management}",
        token_file=Path(TS_KEYS_DIR / "key_file.json"),
    )
    config = settings_document(gateway_config(
        tensorflow, pytorch, Path(MODEL_STORE), Path(target.secrets_dir), GATEWAY_PORT,
        GATEWAY_GRPC_PORT,
    ))  # fmt: skip
    config["host"] = "0.0.0.0"
    config["experiments"] = {"data_dir": str(GATEWAY_DATA_DIR)}
    config["tensorflow"]["transport"] = target.transport
    config["pytorch"]["transport"] = target.transport
    if not target.token_auth:
        del config["pytorch"]["token_file"]
    GatewaySettings.model_validate(config)  # the same schema as local runs, or fail here
    return config


def payloads(rows: int = PAYLOAD_ROWS) -> dict[str, Any]:
    """A few real digits test images (raw pixels) for the Locust job's requests."""
    from trainers.data import load_dataset

    test = load_dataset("digits").test
    x = test.x[:rows].reshape(rows, -1)
    return {"model": "digits-mlp", "rows": x.astype(int).tolist(), "labels": test.y[:rows].tolist()}


def gateway_requirements(pyproject: Path = DEPLOY.parent / "pyproject.toml") -> str:
    """The gateway image's requirements (the lock's input): pyproject's base minus
    trainer-only, plus the `gateway` extra."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = [r for r in project["dependencies"] if not r.startswith(GATEWAY_EXCLUDED)]
    lines = [
        "# Generated by deploy/render.py from pyproject.toml; do not edit. `make lock` pins it",
        "# (with requirements.lock as constraints) into requirements-gateway.lock.",
    ]
    return "\n".join([*lines, *base, *project["optional-dependencies"]["gateway"]]) + "\n"


def _dump_yaml(data: dict[str, Any], header: str) -> str:
    return header + yaml.safe_dump(data, sort_keys=False)


def render(versions: dict[str, str] | None = None) -> dict[Path, str]:
    """Every generated file, by path under deploy/."""
    versions = versions or dict.fromkeys(MODELS, "1")
    header = "# Generated by deploy/render.py from the local launchers' code; do not edit.\n"
    out: dict[Path, str] = {}
    for directory in (DEPLOY / "config" / "tfserving", DEPLOY / "k8s" / "base" / "files"):
        for name, text in tfserving_files().items():
            out[directory / name] = text
    for target, directory in ((COMPOSE, DEPLOY / "config"), (K8S, DEPLOY / "k8s/base/files")):
        ts_dir = directory / "torchserve" if target is COMPOSE else directory
        gw_dir = directory / "gateway" if target is COMPOSE else directory
        out[ts_dir / "config.properties"] = torchserve_properties(target, versions)
        out[gw_dir / "gateway.yaml"] = _dump_yaml(gateway_yaml(target), header)
    out[DEPLOY / "grafana/dashboards/dualserve.json"] = json.dumps(dashboard(), indent=2) + "\n"
    out[DEPLOY / "docker/requirements-gateway.in"] = gateway_requirements()
    out[DEPLOY / "k8s/base/files/payloads.json"] = json.dumps(payloads()) + "\n"
    for path, text in triton.render_repositories().items():  # Triton's repository layouts
        out[path] = header + text
    return out


def store_versions(store: Path) -> dict[str, str]:
    """The latest version of each model in a trained store (what TorchServe will register)."""
    from trainers.manifest import load_manifest

    manifest = load_manifest(store)
    return {m: str(max(int(v) for v in manifest.models[m].versions)) for m in MODELS}


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.is_file() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--model-store", type=Path, help="take model versions from this store")
    args = parser.parse_args(argv)
    versions = store_versions(args.model_store) if args.model_store else None
    files = render(versions)
    outdated = stale(files)
    if args.check:
        for path in outdated:
            print(f"stale: {path.relative_to(DEPLOY.parent)} (run python -m deploy.render)")
        return 1 if outdated else 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
