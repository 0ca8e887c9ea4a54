"""Build the two upstream clients the gateway routes between, from its settings."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.settings import GatewaySettings, TorchServeSettings, UpstreamSettings
from gateway.types import Framework
from gateway.upstreams.base import Upstream
from gateway.upstreams.tfserving_grpc import TFServingGrpcUpstream
from gateway.upstreams.tfserving_rest import TFServingRestUpstream
from gateway.upstreams.torchserve_grpc import TorchServeGrpcUpstream
from gateway.upstreams.torchserve_rest import TorchServeRestUpstream
from gateway.upstreams.torchserve_token import TokenSource


def build_upstreams(
    settings: GatewaySettings, default_versions: Mapping[str, int]
) -> dict[Framework, Upstream]:
    """One client per framework, on the transport its settings choose.

    Args:
        settings: `tensorflow` and `pytorch` give transport, replicas, timeout, limits.
        default_versions: per model, the version the backends serve when a request names
            none (reported in `InferResponse.version` when the backend does not say).

    Raises:
        ValueError: a framework has no replica address for its transport.
    """
    return {
        "tensorflow": tensorflow_upstream(settings.tensorflow, default_versions),
        "pytorch": pytorch_upstream(settings.pytorch, default_versions),
    }


def tensorflow_upstream(
    settings: UpstreamSettings, default_versions: Mapping[str, int]
) -> Upstream:
    _require_addresses("tensorflow", settings)
    if settings.transport == "grpc":
        return TFServingGrpcUpstream(
            settings.grpc,
            timeout_s=settings.timeout_s,
            unhealthy_for_s=settings.unhealthy_for_s,
            default_versions=default_versions,
        )
    return TFServingRestUpstream(
        settings.rest,
        timeout_s=settings.timeout_s,
        max_connections=settings.max_connections,
        unhealthy_for_s=settings.unhealthy_for_s,
        default_versions=default_versions,
    )


def pytorch_upstream(settings: TorchServeSettings, default_versions: Mapping[str, int]) -> Upstream:
    _require_addresses("pytorch", settings)
    token = TokenSource(
        settings.token.get_secret_value() if settings.token else None, settings.token_file
    )
    if settings.transport == "grpc":
        return TorchServeGrpcUpstream(
            settings.grpc,
            token=token,
            timeout_s=settings.timeout_s,
            unhealthy_for_s=settings.unhealthy_for_s,
            default_versions=default_versions,
        )
    return TorchServeRestUpstream(
        settings.rest,
        token=token,
        timeout_s=settings.timeout_s,
        max_connections=settings.max_connections,
        unhealthy_for_s=settings.unhealthy_for_s,
        default_versions=default_versions,
    )


def _require_addresses(framework: str, settings: UpstreamSettings) -> None:
    if not settings.addresses:
        raise ValueError(
            f"{framework}: transport is {settings.transport} but settings.{framework}."
            f"{settings.transport} lists no replica address"
        )
