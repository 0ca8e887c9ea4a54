"""Build the two upstream clients the gateway routes between, from its settings."""

from __future__ import annotations

from gateway.settings import GatewaySettings, TorchServeSettings, UpstreamSettings
from gateway.core.types import Framework
from gateway.upstreams.base import Upstream
from gateway.upstreams.transports.grpc_channels import GrpcWire
from gateway.upstreams.pooled import PooledUpstream
from gateway.upstreams.transports.rest_session import RestWire
from gateway.upstreams.kinds.tfserving_grpc import TFServingGrpc
from gateway.upstreams.kinds.tfserving_rest import TFServingRest
from gateway.upstreams.kinds.torchserve_grpc import TorchServeGrpc
from gateway.upstreams.kinds.torchserve_rest import TorchServeRest
from gateway.upstreams.torchserve_token import TokenSource


def build_upstreams(settings: GatewaySettings) -> dict[Framework, Upstream]:
    """One client per framework, on the transport its settings choose.

    Args:
        settings: `tensorflow` and `pytorch` give transport, replicas, timeout, limits.

    Raises:
        ValueError: a framework has no replica address for its transport.
    """
    return {
        "tensorflow": tensorflow_upstream(settings.tensorflow),
        "pytorch": pytorch_upstream(settings.pytorch),
    }


def tensorflow_upstream(settings: UpstreamSettings) -> Upstream:
    _require_addresses("tensorflow", settings)
    if settings.transport == "grpc":
        return PooledUpstream(settings, TFServingGrpc(), GrpcWire(settings))
    return PooledUpstream(settings, TFServingRest(), RestWire(settings))


def pytorch_upstream(settings: TorchServeSettings) -> Upstream:
    _require_addresses("pytorch", settings)
    token = TokenSource(
        settings.token.get_secret_value() if settings.token else None, settings.token_file
    )
    if settings.transport == "grpc":
        return PooledUpstream(settings, TorchServeGrpc(token), GrpcWire(settings))
    return PooledUpstream(settings, TorchServeRest(token), RestWire(settings))


def _require_addresses(framework: str, settings: UpstreamSettings) -> None:
    if not settings.addresses:
        raise ValueError(
            f"{framework}: transport is {settings.transport} but settings.{framework}."
            f"{settings.transport} lists no replica address"
        )
