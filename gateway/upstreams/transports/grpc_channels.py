"""The gRPC wire: grpc.aio channels of one backend, one per replica, opened once, and the
one error boundary of its calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gateway.settings import UpstreamSettings
from gateway.upstreams.failures import Target, from_grpc, from_transport

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


@dataclass(frozen=True)
class GrpcCall:
    """One unary call: the method's full path, its message (de)serializers, the message
    and the call's metadata."""

    method: str
    serializer: Callable[[Any], bytes]
    deserializer: Callable[[bytes], Any]
    message: Any
    metadata: tuple[tuple[str, str], ...] = ()


class GrpcWire:
    """A grpc.aio channel per replica address (`settings.grpc`), opened in the event loop.

    Args:
        settings: `grpc` (host:port of every replica).
    """

    def __init__(self, settings: UpstreamSettings) -> None:
        self.addresses = list(settings.grpc)
        receive = ("grpc.max_receive_message_length", settings.max_answer_bytes)
        self.options = tuple(
            receive if name == receive[0] else (name, value) for name, value in CHANNEL_OPTIONS
        )

    def open(self) -> list[Replica]:
        return [
            Replica(a, grpc.aio.insecure_channel(a, options=self.options)) for a in self.addresses
        ]

    async def send(
        self,
        replica: Replica,
        call: GrpcCall,
        timeout: float,
        target: Target,
        trace: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """The reply to `call`; `trace` goes out as metadata (the gRPC wire's one writer of
        the trace context)."""
        method = replica.unary(call.method, call.serializer, call.deserializer)
        metadata = call.metadata + trace if trace else call.metadata
        return await grpc_call(method, call.message, timeout, target, metadata)

    def describe(self, replica: Replica, call: GrpcCall) -> tuple[str, dict[str, Any]]:
        """A gRPC client span's name and attributes (OpenTelemetry's RPC conventions)."""
        service, _, method = call.method.strip("/").rpartition("/")
        host, _, port = replica.address.rpartition(":")
        return f"{service}/{method}", {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "server.address": host,
            "server.port": int(port) if port.isdigit() else 0,
        }

    async def aclose(self, replicas: list[Replica]) -> None:
        for replica in replicas:
            await replica.channel.close()


async def grpc_call(
    method: grpc.aio.UnaryUnaryMultiCallable,
    message: Any,
    timeout: float,
    target: Target,
    metadata: tuple[tuple[str, str], ...] = (),
) -> Any:
    """The error boundary of every gRPC call."""
    try:
        return await method(message, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        raise from_grpc(exc, target) from exc
    except (TimeoutError, OSError) as exc:
        raise from_transport(exc, target) from exc
