"""The gRPC ingress's bounds (issue 24): a grpc.aio server with the gateway's
`server_options` refuses metadata past `edge.grpc_max_metadata_bytes` every time, and
serves a call with ordinary metadata. A bare server with one echo method, in process."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway.protocols.grpc.server import server_options
from gateway.settings import EdgeSettings

EDGE = EdgeSettings(grpc_max_metadata_bytes=4096)
METHOD = "/test.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _calls(metadata_bytes: list[int]) -> list[grpc.StatusCode]:
    server = grpc.aio.server(options=server_options(1 << 20, 1, EDGE))
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", {"Echo": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(METHOD)
            for size in metadata_bytes:
                try:
                    await echo(b"x", metadata=(("x-pad", "a" * size),), timeout=10)
                    codes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
    finally:
        await server.stop(0)
    return codes


@pytest.mark.parametrize("size", [100, 6 * 1024, 64 * 1024])  # 6 KiB: under gRPC's default
def test_metadata_past_the_limit_is_refused_every_time(size: int) -> None:
    codes = asyncio.run(_calls([size] * 5 + [100]))
    if size < EDGE.grpc_max_metadata_bytes:
        assert codes == [grpc.StatusCode.OK] * 6
    else:
        assert codes[:5] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
        assert codes[5] == grpc.StatusCode.OK  # the next ordinary call is served


def test_every_bound_is_set() -> None:
    options = dict(server_options(1 << 20, 1, EDGE))
    assert options["grpc.max_metadata_size"] == options["grpc.absolute_max_metadata_size"] == 4096
    assert options["grpc.max_concurrent_streams"] == EDGE.grpc_max_concurrent_streams
    assert options["grpc.max_connection_idle_ms"] == EDGE.grpc_max_connection_idle_s * 1000
    assert options["grpc.server_handshake_timeout_ms"] == EDGE.head_timeout_s * 1000
