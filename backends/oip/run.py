"""`python -m backends.oip`: load the repository, listen on REST and gRPC, follow the
manifest, until SIGTERM or SIGINT.

Ports 0 let the OS choose; the bound ones are written to `--ports-file` (atomically) once
both listen, which is how the launcher learns them (no race for a free port). Every model
is loaded before the ports open, so a listening server is a loaded one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from aiohttp import web

from backends.oip.core import OipCore
from backends.oip.grpc_service import add_service
from backends.oip.repository import ModelRepository
from backends.oip.rest import create_app
from trainers.errors import ManifestError

log = logging.getLogger("oip")
GRPC_MESSAGE_LIMIT = 64 * 1024**2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backends.oip", description=__doc__)
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback)")
    parser.add_argument("--rest-port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--grpc-port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--ports-file", type=Path, help="write the bound ports here as JSON")
    parser.add_argument("--poll-s", type=float, default=2.0, help="manifest poll interval")
    parser.add_argument("--num-versions", type=int, default=2, help="newest versions loaded")
    parser.add_argument("--threads", type=int, default=1, help="runners (torch threads each 1)")
    parser.add_argument("--max-batch-size", type=int, default=4096)
    parser.add_argument("--max-waiting", type=int, default=64, help="waiting requests; 503 past")
    parser.add_argument("--max-body-bytes", type=int, default=GRPC_MESSAGE_LIMIT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    torch.set_num_threads(1)  # one runner, one core: several runners scale across cores
    repository = ModelRepository(args.model_store.resolve(), args.num_versions)
    try:
        repository.poll_once()
    except ManifestError as exc:
        log.error("%s", exc)
        return 2
    core = OipCore(
        repository,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_waiting=args.max_waiting,
    )
    asyncio.run(serve(core, args))
    return 0


async def serve(core: OipCore, args: argparse.Namespace) -> None:
    """Listen on both transports, poll the manifest, stop on SIGTERM/SIGINT."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", args.max_body_bytes),
            ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT),
        ]
    )
    add_service(server, core)
    grpc_port = server.add_insecure_port(f"{args.host}:{args.grpc_port}")
    await server.start()
    runner = web.AppRunner(create_app(core, args.max_body_bytes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.rest_port).start()
    rest_port = int(runner.addresses[0][1])
    log.info("OIP REST at %s:%d, gRPC at %s:%d", args.host, rest_port, args.host, grpc_port)
    if args.ports_file:
        write_ports(args.ports_file, grpc_port, rest_port)
    poller = asyncio.create_task(poll(core.repository, args.poll_s))
    try:
        await wait_for_stop()
    finally:
        poller.cancel()
        await server.stop(grace=5)
        await runner.cleanup()
        core.close()


async def poll(repository: ModelRepository, interval: float) -> None:
    """Follow the manifest: new versions load, versions past `num_versions` unload."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(repository.poll_once)
        except ManifestError as exc:  # keep serving what is loaded
            log.warning("manifest not re-read: %s", exc)


def write_ports(path: Path, grpc_port: int, rest_port: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"grpc": grpc_port, "rest": rest_port}), encoding="utf-8")
    tmp.replace(path)


async def wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
