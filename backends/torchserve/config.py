"""TorchServe settings and the config.properties they render to.

The defaults give TorchServe the same resources as the TF Serving side (1 worker x 1
CPU thread per model; server-side batches of up to 8 requests waiting at most 2 ms),
so that a comparison measures the frameworks, not the provisioning. Everything binds
to loopback; ports left at 0 are chosen free when the server starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TOKEN_FILE = "key_file.json"
"""Name of the token file TorchServe 0.12 writes into its working directory."""


class TorchServeSettings(BaseModel):
    """How dualserve runs TorchServe; every field maps to config.properties or the env."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Bind address of every listener (REST, gRPC, metrics). Loopback by default."""
    inference_port: int = Field(0, ge=0, le=65535)
    """REST inference API port; 0 picks a free port at start."""
    management_port: int = Field(0, ge=0, le=65535)
    """REST management API port; 0 picks a free port at start."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """Prometheus metrics port; 0 picks a free port at start."""
    grpc_inference_port: int = Field(0, ge=0, le=65535)
    """gRPC inference API port; 0 picks a free port at start."""
    grpc_management_port: int = Field(0, ge=0, le=65535)
    """gRPC management API port; 0 picks a free port at start."""
    workers_per_model: int = Field(1, ge=1)
    """Python worker processes per model (`default_workers_per_model`, min = max)."""
    torch_threads: int = Field(1, ge=1)
    """CPU threads per worker (`DUALSERVE_TORCH_THREADS`, `OMP_NUM_THREADS`); TF uses 1/1."""
    batch_size: int = Field(8, ge=1)
    """Largest server-side batch (requests) a worker receives; TF Serving side uses 8."""
    max_batch_delay_ms: int = Field(2, ge=0)
    """How long TorchServe waits to fill a batch, in milliseconds; TF side uses 2 ms."""
    response_timeout_s: int = Field(60, ge=1)
    """Seconds a worker may take for one batch before TorchServe restarts it."""
    startup_timeout_s: int = Field(120, ge=1)
    """Seconds a worker may take to load its model (`default_startup_timeout`)."""
    number_of_gpu: int | None = Field(None, ge=0)
    """GPUs TorchServe may use; None counts them with `torch.cuda.device_count()`."""
    token_expiration_min: int = Field(30 * 24 * 60, ge=1)
    """Lifetime of the inference/management tokens. TorchServe's default (60 min) would
    lock the gateway out of a long-running server, so the default here is 30 days."""
    disable_system_metrics: bool = True
    """Skip TorchServe's per-minute host metrics (a psutil sweep that costs CPU and is
    already covered by Prometheus node metrics in production)."""
    serve_versions: Literal["latest", "all"] = "latest"
    """"latest" loads `<model>.mar`; "all" loads every `<model>.v<N>.mar` (one worker
    each), the newest as the default version, so clients can pin older ones."""
    job_queue_size: int = Field(1000, ge=1)
    """Requests TorchServe queues per model before it answers 503."""
    enable_model_api: bool = False
    """Let the management API register and unregister models while the server runs
    (`enable_model_api`; TorchServe 0.12 refuses both by default). `dualserve up` turns it
    on: its registrar registers each new `.mar` version (`dualserve.registrar`)."""
    vmargs: str = "-Xms128m -Xmx1g -XX:+UseSerialGC"
    """JVM options of the frontend; a small serial-GC heap suits a shared CPU box."""


@dataclass(frozen=True)
class Ports:
    """The concrete ports of one server run (no zeros)."""

    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int
    worker_base: int
    """First worker port; TorchServe names its worker sockets `<tmp>/.ts.sock.<port>`."""


@dataclass(frozen=True)
class ModelArchive:
    """One .mar to load: the model name, the archive file name and its version."""

    name: str
    mar: str
    version: str
    default: bool = True


def render_config(
    settings: TorchServeSettings, ports: Ports, model_store: Path, archives: list[ModelArchive]
) -> str:
    """The config.properties text for one run (TorchServe reads it with `--ts-config`)."""
    properties = {
        **_listeners(settings.host, ports),
        "model_store": str(model_store),
        "load_models": ",".join(f"{a.name}={a.mar}" for a in archives) or "standalone",
        "models": json.dumps(models_json(settings, archives), separators=(",", ":")),
        "default_workers_per_model": str(settings.workers_per_model),
        "number_of_gpu": str(settings.number_of_gpu or 0),
        "disable_token_authorization": "false",
        "token_expiration_min": str(settings.token_expiration_min),
        "enable_model_api": str(settings.enable_model_api).lower(),
        "metrics_mode": "prometheus",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",
        "default_response_timeout": str(settings.response_timeout_s),
        "default_startup_timeout": str(settings.startup_timeout_s),
        "disable_system_metrics": str(settings.disable_system_metrics).lower(),
        "job_queue_size": str(settings.job_queue_size),
        "initial_worker_port": str(ports.worker_base),
        "vmargs": settings.vmargs,
    }
    lines = ["# Written by dualserve (backends/torchserve/config.py); edits are overwritten."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def _listeners(host: str, ports: Ports) -> dict[str, str]:
    return {
        "inference_address": f"http://{host}:{ports.inference}",
        "management_address": f"http://{host}:{ports.management}",
        "metrics_address": f"http://{host}:{ports.metrics}",
        "grpc_inference_address": host,
        "grpc_inference_port": str(ports.grpc_inference),
        "grpc_management_address": host,
        "grpc_management_port": str(ports.grpc_management),
    }


def models_json(
    settings: TorchServeSettings, archives: list[ModelArchive]
) -> dict[str, dict[str, dict[str, object]]]:
    """TorchServe's per-model, per-version `models` setting (batching, workers, timeout)."""
    models: dict[str, dict[str, dict[str, object]]] = {}
    for archive in archives:
        models.setdefault(archive.name, {})[archive.version] = {
            "defaultVersion": archive.default,
            "marName": archive.mar,
            "minWorkers": settings.workers_per_model,
            "maxWorkers": settings.workers_per_model,
            "batchSize": settings.batch_size,
            "maxBatchDelay": settings.max_batch_delay_ms,
            "responseTimeout": settings.response_timeout_s,
        }
    return models


def worker_env(settings: TorchServeSettings) -> dict[str, str]:
    """Environment for the server and its workers: one thread pool size everywhere."""
    threads = str(settings.torch_threads)
    return {
        "DUALSERVE_TORCH_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
