"""grpc.aio channels of one backend: one per replica, opened once, balanced by `ReplicaPool`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from gateway.upstreams.replicas import ReplicaPool

_MIB = 1024 * 1024
# Why these: answers of large batches exceed gRPC's 4 MiB default; a backend that comes
# back after a restart is reconnected within ~2 s instead of gRPC's 120 s backoff ceiling.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", 64 * _MIB),
    ("grpc.max_receive_message_length", 64 * _MIB),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class Replica:
    """One replica's channel and the method callables made from it (each made once)."""

    def __init__(self, address: str, channel: grpc.aio.Channel) -> None:
        self.address = address
        self.channel = channel
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def unary(
        self, path: str, serializer: Callable[[Any], bytes], deserializer: Callable[[bytes], Any]
    ) -> grpc.aio.UnaryUnaryMultiCallable:
        method = self._methods.get(path)
        if method is None:
            method = self.channel.unary_unary(
                path, request_serializer=serializer, response_deserializer=deserializer
            )
            self._methods[path] = method
        return method


class ChannelPool:
    """Opens the channels on first use, inside the running event loop they belong to.

    Args:
        backend: framework name for error messages.
        addresses: `host:port` of every replica.
        unhealthy_for_s: how long a replica that refused a connection is skipped.
    """

    def __init__(self, backend: str, addresses: Sequence[str], unhealthy_for_s: float) -> None:
        if not addresses:
            raise ValueError(f"{backend}: no gRPC replica addresses configured")
        self.backend = backend
        self.addresses = list(addresses)
        self.unhealthy_for_s = unhealthy_for_s
        self._pool: ReplicaPool[Replica] | None = None

    def get(self) -> ReplicaPool[Replica]:
        if self._pool is None:
            replicas = [
                Replica(a, grpc.aio.insecure_channel(a, options=CHANNEL_OPTIONS))
                for a in self.addresses
            ]
            self._pool = ReplicaPool(self.backend, replicas, self.unhealthy_for_s)
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            for replica in self._pool.replicas:
                await replica.channel.close()
            self._pool = None
