"""The gateway's gRPC ingress: one `grpc.aio` server in the gateway's event loop.

It serves TF Serving's `PredictionService` / `ModelService`, the Open Inference
Protocol's `GRPCInferenceService`, `grpc.health.v1.Health` (the empty service name and
each ingress service answer SERVING when every model has a ready arm, as /readyz) and
server reflection. `create_app`'s lifespan starts it when `settings.grpc_port` is set and
stops it on shutdown. Messages over `settings.max_body_bytes` are refused by gRPC itself
with RESOURCE_EXHAUSTED, before any decoding.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway._proto import oip
from gateway.context import GatewayContext
from gateway.protocols.grpc import oip as grpc_oip
from gateway.protocols.grpc import tfserving as grpc_tfserving
from gateway.settings import EdgeSettings

_MIB = 1024 * 1024
SERVICES = (grpc_tfserving.PREDICTION_SERVICE, grpc_tfserving.MODEL_SERVICE, oip.SERVICE)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
Readiness = Callable[[], Awaitable[bool]]
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ReadinessHealth(health_aio.HealthServicer):  # type: ignore[misc]
    """`Check` asks the gateway's readiness each time, so load balancers see a backend
    outage; `Watch` streams the statuses `Check` last set."""

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self.readiness = readiness
        self.stopping = False

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        if not self.stopping:
            serving = await self.readiness()
            status = _SERVING if serving else _NOT_SERVING
            for service in ("", *SERVICES):
                await self.set(service, status)
        return await super().Check(request, context)


def _describe_standard_services() -> None:
    """Health and reflection in the gateway's private pool too, so reflection can
    describe every service it lists from that one pool."""
    for module in (health_pb2, reflection_pb2):
        proto = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        try:
            oip.POOL.FindFileByName(proto.name)
        except KeyError:
            oip.POOL.Add(proto)


def server_options(
    max_body_bytes: int, workers: int = 1, edge: EdgeSettings | None = None
) -> list[tuple[str, int]]:
    """Message limits, SO_REUSEPORT only when several workers share the port, and the
    ingress's bounds on what one client may hold (`EdgeSettings`, issue 24):

    - request metadata at most `edge.grpc_max_metadata_bytes` (soft and hard limit the
      same, so a larger one is refused every time, RESOURCE_EXHAUSTED; gRPC's default
      soft limit is 8 KiB and larger ones are refused only sometimes up to 16 KiB);
    - `edge.grpc_max_concurrent_streams` calls in flight per connection (HTTP/2
      SETTINGS_MAX_CONCURRENT_STREAMS; unbounded by default);
    - a connection with no call for `edge.grpc_max_connection_idle_s` is sent GOAWAY;
    - the HTTP/2 handshake must end within `edge.head_timeout_s` (default 120 s), the
      counterpart of the REST head timeout;
    - keepalive pings every `edge.grpc_keepalive_s`, a connection that does not answer
      within 20 s is closed (gRPC's own default timeout).
    """
    edge = edge or EdgeSettings()
    metadata = edge.grpc_max_metadata_bytes
    return [
        ("grpc.max_receive_message_length", max_body_bytes),
        # Answers of large batches exceed gRPC's 4 MiB default.
        ("grpc.max_send_message_length", 64 * _MIB),
        # Workers bind the port together and the kernel spreads connections over them;
        # one process alone must not share a fixed port silently with another.
        ("grpc.so_reuseport", int(workers > 1)),
        ("grpc.max_metadata_size", metadata),
        ("grpc.absolute_max_metadata_size", metadata),
        ("grpc.max_concurrent_streams", edge.grpc_max_concurrent_streams),
        ("grpc.max_connection_idle_ms", int(edge.grpc_max_connection_idle_s * 1000)),
        ("grpc.server_handshake_timeout_ms", int(edge.head_timeout_s * 1000)),
        ("grpc.keepalive_time_ms", int(edge.grpc_keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


@dataclass
class GrpcIngress:
    """A started gRPC ingress and the port it bound (useful when asked for port 0)."""

    server: grpc.aio.Server
    health: ReadinessHealth
    port: int

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, then let in-flight calls finish within `grace` seconds."""
        self.health.stopping = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_ingress(ctx: GatewayContext) -> GrpcIngress:
    """Build and start the gRPC server on `settings.host:settings.grpc_port`; its health
    service follows the data plane's readiness."""
    settings = ctx.settings
    options = server_options(settings.max_body_bytes, settings.workers, settings.edge)
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((*grpc_tfserving.handlers(ctx), *grpc_oip.handlers(ctx)))
    health = ReadinessHealth(ctx.dataplane.ready)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    _describe_standard_services()
    names = (*SERVICES, HEALTH_SERVICE, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server, pool=oip.POOL)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port or 0}")
    if port == 0:
        raise RuntimeError(f"cannot bind the gRPC ingress to {settings.host}:{settings.grpc_port}")
    await server.start()
    return GrpcIngress(server, health, port)
