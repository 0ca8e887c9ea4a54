"""Build the two upstream clients the gateway routes between, from its settings."""

from __future__ import annotations

from gateway.core.types import Framework
from gateway.settings import GatewaySettings, TorchServeSettings, UpstreamSettings
from gateway.upstreams.base import Upstream
from gateway.upstreams.kinds.tfserving_grpc import TFServingGrpc
from gateway.upstreams.kinds.tfserving_rest import TFServingRest
from gateway.upstreams.kinds.torchserve_grpc import TorchServeGrpc
from gateway.upstreams.kinds.torchserve_rest import TorchServeRest
from gateway.upstreams.pooled import PooledUpstream
from gateway.upstreams.torchserve_token import TokenSource
from gateway.upstreams.transports.grpc_channels import GrpcWire
from gateway.upstreams.transports.rest_session import RestWire


def build_upstreams(settings: GatewaySettings) -> dict[Framework, Upstream]:
    """One client per framework, on the transport its settings choose.

    Args:
        settings: `tensorflow` and `pytorch` give transport, replicas, timeout, limits.

    Raises:
        ValueError: a framework has no replica address for its transport.
    """
    short = settings.breaker.min_timeout_s  # shorter attempts judge no replica either
    return {
        "tensorflow": tensorflow_upstream(settings.tensorflow, short),
        "pytorch": pytorch_upstream(settings.pytorch, short),
    }


def tensorflow_upstream(settings: UpstreamSettings, min_verdict_s: float = 0.0) -> Upstream:
    _require_addresses("tensorflow", settings)
    if settings.transport == "grpc":
        return PooledUpstream(settings, TFServingGrpc(), GrpcWire(settings), min_verdict_s)
    return PooledUpstream(settings, TFServingRest(), RestWire(settings), min_verdict_s)


def pytorch_upstream(settings: TorchServeSettings, min_verdict_s: float = 0.0) -> Upstream:
    _require_addresses("pytorch", settings)
    token = TokenSource(
        settings.token.get_secret_value() if settings.token else None, settings.token_file
    )
    if settings.transport == "grpc":
        return PooledUpstream(settings, TorchServeGrpc(token), GrpcWire(settings), min_verdict_s)
    return PooledUpstream(settings, TorchServeRest(token), RestWire(settings), min_verdict_s)


def _require_addresses(framework: str, settings: UpstreamSettings) -> None:
    if not settings.addresses:
        raise ValueError(
            f"{framework}: transport is {settings.transport} but settings.{framework}."
            f"{settings.transport} lists no replica address"
        )
