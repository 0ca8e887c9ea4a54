"""`python -m backends.tfserving`: the bundled TF Serving-compatible model server.

Imports TensorFlow (through the servable and the gRPC codec); the launcher never imports
this module.

Wiring only: flags -> configs -> model manager (initial load, then polling) -> serving
core (+ batcher) -> gRPC and REST servers on one event loop, until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import tensorflow as tf
from aiohttp import web

from backends.tfserving import aux_config
from backends.tfserving.aux_config import BatchingParameters, MonitoringConfig
from backends.tfserving.server.batching import BatchScheduler
from backends.tfserving.commandline import PORTS_FILE_ENV
from backends.tfserving.server.core import ServingCore
from backends.tfserving.flags import FlagError, ServerFlags, parse_flags, validate
from backends.tfserving.server.grpc_service import add_services
from backends.tfserving.server.manager import Loader, ModelManager
from backends.tfserving.server.metrics import ServerMetrics
from backends.tfserving.model_config import ConfigError, ModelConfig, read_model_config
from backends.tfserving.server.rest import create_rest_app
from backends.tfserving.server.servable import Servable
from backends.tfserving.server.warmup import run_warmup

log = logging.getLogger("tfserving")
BIND_HOST_ENV = "DUALSERVE_TFSERVING_HOST"  # TF Serving binds every interface; so do we
GRPC_MESSAGE_LIMIT = 256 * 1024**2


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    try:
        flags = parse_flags(sys.argv[1:] if argv is None else argv)
        validate(flags, any_port=PORTS_FILE_ENV in os.environ)
        models = model_configs(flags)
        batching = batching_parameters(flags)
        monitoring = monitoring_config(flags)
    except (FlagError, ConfigError) as exc:
        log.error("%s", exc)
        return 2
    for warning in flags.warnings:
        log.warning("%s", warning)
    asyncio.run(serve(flags, models, batching, monitoring))
    return 0


def model_configs(flags: ServerFlags) -> list[ModelConfig]:
    if flags.model_config_file:
        return read_model_config(Path(flags.model_config_file))
    return [ModelConfig(flags.model_name, Path(flags.model_base_path).resolve())]


def batching_parameters(flags: ServerFlags) -> BatchingParameters | None:
    if not flags.enable_batching:
        return None
    if not flags.batching_parameters_file:
        return BatchingParameters()
    text = aux_config.read_text(flags.batching_parameters_file, "batching parameters file")
    return aux_config.parse_batching_parameters(text, flags.batching_parameters_file)


def monitoring_config(flags: ServerFlags) -> MonitoringConfig:
    if not flags.monitoring_config_file:
        return MonitoringConfig()
    text = aux_config.read_text(flags.monitoring_config_file, "monitoring config file")
    return aux_config.parse_monitoring_config(text, flags.monitoring_config_file)


def make_loader(flags: ServerFlags, metrics: ServerMetrics) -> Loader:
    """Load + warm up one version, with TF's thread pools sized by the flags."""
    tf.config.threading.set_intra_op_parallelism_threads(flags.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(flags.tensorflow_inter_op_parallelism)

    def load(name: str, version: int, path: Path) -> Servable:
        try:
            servable = Servable(name, version, path)
        except Exception:
            metrics.load_attempts.inc(str(path), "fail")
            raise
        metrics.load_attempts.inc(str(path), "success")
        if flags.enable_model_warmup:
            warm_up(servable, metrics)
        return servable

    return load


def warm_up(servable: Servable, metrics: ServerMetrics) -> None:
    """Replay the warm-up records before the version is swapped in; one log line."""
    count, seconds = run_warmup(servable)
    metrics.warmup_latency.labels(str(servable.path)).observe(seconds * 1e6)
    log.info(
        "Warmed up servable version {name: %s version: %d} with %d records in %.1f ms",
        servable.name,
        servable.version,
        count,
        seconds * 1e3,
    )


async def serve(
    flags: ServerFlags,
    models: list[ModelConfig],
    batching: BatchingParameters | None,
    monitoring: MonitoringConfig,
) -> None:
    """Load, listen, and run until SIGTERM or SIGINT."""
    core = await build_core(flags, models, batching)
    manager = core.manager
    host = os.environ.get(BIND_HOST_ENV, "0.0.0.0")
    ports_file = os.environ.get(PORTS_FILE_ENV)
    grpc_server, grpc_port = await start_grpc(core, host, flags.port)
    runner, rest_port = await start_rest(core, host, flags, monitoring, bool(ports_file))
    if ports_file:
        write_ports(Path(ports_file), grpc_port, rest_port)
    try:
        await wait_for_stop()
    finally:
        log.info("Shutting down")
        await grpc_server.stop(grace=5)
        if runner is not None:
            await runner.cleanup()
        manager.stop()
        core.close()


async def build_core(
    flags: ServerFlags, models: list[ModelConfig], batching: BatchingParameters | None
) -> ServingCore:
    """Load every model (before the ports open, like the real binary), then start polling."""
    metrics = ServerMetrics()
    manager = ModelManager(models, make_loader(flags, metrics))
    started = time.perf_counter()
    await asyncio.to_thread(manager.poll_once)
    log.info("Initial load of %d model(s) took %.1f s", len(models), time.perf_counter() - started)
    manager.start_polling(flags.file_system_poll_wait_seconds)
    batcher = BatchScheduler(batching, metrics.record_batch) if batching else None
    return ServingCore(manager, metrics, batcher)


async def start_grpc(core: ServingCore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """The started gRPC server and the port it bound (the OS picks one for port 0)."""
    options = [
        ("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
        ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
    ]
    server = grpc.aio.server(options=options)
    add_services(server, core)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the gRPC port {host}:{port}")
    await server.start()
    log.info("Running gRPC ModelServer at %s:%d ...", host, bound)
    return server, bound


async def start_rest(
    core: ServingCore,
    host: str,
    flags: ServerFlags,
    monitoring: MonitoringConfig,
    any_port: bool = False,
) -> tuple[web.AppRunner | None, int]:
    """The REST runner and its bound port; (None, 0) when REST is off (port 0, unless
    `any_port`: then the OS picks the port)."""
    port = flags.rest_api_port
    if port <= 0 and not any_port:
        return None, 0
    metrics_path = monitoring.path if monitoring.enable else None
    app = create_rest_app(core, metrics_path, flags.rest_api_timeout_in_ms / 1e3)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, max(port, 0)).start()
    bound = int(runner.addresses[0][1])
    log.info("Exporting HTTP/REST API at:%s:%d ...", host, bound)
    return runner, bound


def write_ports(path: Path, grpc_port: int, rest_port: int) -> None:
    """Atomically, so the launcher never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"grpc": grpc_port, "rest": rest_port}), encoding="utf-8")
    tmp.replace(path)


async def wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
