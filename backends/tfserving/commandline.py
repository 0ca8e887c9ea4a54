"""The `tensorflow_model_server` command line and the three files it reads.

Shared by the real binary and the bundled server: the same flags, the same text-proto
model config, batching parameters and monitoring config. No TensorFlow import.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from backends.tfserving.aux_config import (
    DEFAULT_METRICS_PATH,
    BatchingParameters,
    MonitoringConfig,
    render_batching_parameters,
    render_monitoring_config,
)
from backends.tfserving.model_config import ModelConfig, VersionPolicy, render_model_config

BINARY = "tensorflow_model_server"
PORTS_FILE_ENV = "DUALSERVE_TFSERVING_PORTS_FILE"
"""Set for the bundled server only: a port flag of 0 lets the OS pick the port (no race
between choosing a free port and binding it), and the server writes the bound ports to
this file as `{"grpc": P, "rest": Q}` once both listen. The real binary has no such mode."""


@dataclass(frozen=True)
class TFServingSettings:
    """How to run TF Serving; defaults give a fair comparison with TorchServe locally."""

    grpc_port: int = 0
    """gRPC port (`--port`); 0: the bundled server binds a port the OS picks and reports
    it (PORTS_FILE_ENV), the real binary gets a free loopback port."""
    rest_port: int = 0
    """REST port (`--rest_api_port`); 0 as for `grpc_port`."""
    enable_batching: bool = True
    """Server-side batching (`--enable_batching`) with the parameters below."""
    max_batch_size: int = 4096
    """The largest request accepted while batching (larger ones get 400)."""
    max_execution_batch_size: int = 8
    """Largest merged batch run at once; bigger requests are split (large batch
    splitting), so a batch of single-example requests matches TorchServe's batchSize 8."""
    batch_timeout_micros: int = 2000
    """How long a batch waits for more requests after its first one."""
    max_enqueued_batches: int = 100
    """Batches that may wait per queue; beyond it requests get UNAVAILABLE / 503."""
    num_batch_threads: int = 1
    """Batches run at once."""
    intra_op_threads: int = 1
    """`--tensorflow_intra_op_parallelism`; 1 matches TorchServe's 1 worker x 1 thread."""
    inter_op_threads: int = 1
    """`--tensorflow_inter_op_parallelism`."""
    poll_wait_seconds: int = 2
    """`--file_system_poll_wait_seconds`: how often new or removed versions are noticed."""
    num_versions: int = 1
    """The model config's `latest { num_versions }`: how many of the newest version
    directories are served (TF Serving's default, 1). `dualserve up` keeps 2, so the version
    the gateway routes stays loaded while the next one lands in both backends."""


def write_configs(
    model_store: Path,
    run_dir: Path,
    settings: TFServingSettings,
    models: list[str],
    version_labels: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Path]:
    """Write the three text-proto files TF Serving reads; returns their paths by role.

    `version_labels` (model -> label -> version) become each model's `version_labels`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    base = Path(model_store).resolve() / "tensorflow"
    files = {
        "model_config": run_dir / "models.config",
        "batching": run_dir / "batching_parameters.txt",
        "monitoring": run_dir / "monitoring.config",
    }
    labels = version_labels or {}
    policy = VersionPolicy("latest", num_versions=settings.num_versions)
    configs = [
        ModelConfig(name=m, base_path=base / m, policy=policy, labels=labels.get(m, {}))
        for m in models
    ]
    files["model_config"].write_text(render_model_config(configs), encoding="utf-8")
    params = BatchingParameters(
        max_batch_size=settings.max_batch_size,
        batch_timeout_micros=settings.batch_timeout_micros,
        max_enqueued_batches=settings.max_enqueued_batches,
        num_batch_threads=settings.num_batch_threads,
        enable_large_batch_splitting=True,
        max_execution_batch_size=settings.max_execution_batch_size,
    )
    files["batching"].write_text(render_batching_parameters(params), encoding="utf-8")
    monitoring = MonitoringConfig(enable=True, path=DEFAULT_METRICS_PATH)
    files["monitoring"].write_text(render_monitoring_config(monitoring), encoding="utf-8")
    return files


def server_flags(
    settings: TFServingSettings, grpc_port: int, rest_port: int, files: dict[str, Path]
) -> list[str]:
    """The tensorflow_model_server flags, identical for the real and the bundled server."""
    flags = [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={files['model_config']}",
        f"--file_system_poll_wait_seconds={settings.poll_wait_seconds}",
        f"--monitoring_config_file={files['monitoring']}",
        f"--tensorflow_intra_op_parallelism={settings.intra_op_threads}",
        f"--tensorflow_inter_op_parallelism={settings.inter_op_threads}",
    ]
    if settings.enable_batching:
        flags += ["--enable_batching=true", f"--batching_parameters_file={files['batching']}"]
    return flags


def server_command(flags: list[str], binary: str | None = None) -> tuple[list[str], str]:
    """(argv, binary kind): the real binary when found, else the bundled server."""
    path = binary if binary is not None else shutil.which(BINARY)
    if path:
        return [path, *flags], BINARY
    return [sys.executable, "-m", "backends.tfserving", *flags], "bundled"
