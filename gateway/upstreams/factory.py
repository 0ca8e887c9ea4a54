"""Build the two upstream clients the gateway routes between, from its settings.

Each arm's client is chosen by the server it calls (`GatewaySettings.servers`, a
`ServerKind`): `tfserving`, `torchserve` or `oip` (any Open Inference Protocol server);
`upstream_for` builds one from that key, so whatever names an arm's server later (an
experiment's arms) picks its client here.
"""

from __future__ import annotations

from gateway.core.types import FRAMEWORKS, Framework
from gateway.settings import GatewaySettings, ServerKind, TorchServeSettings, UpstreamSettings
from gateway.upstreams.base import Upstream
from gateway.upstreams.kinds.oip_grpc import OipGrpc
from gateway.upstreams.kinds.oip_rest import OipRest
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
    return {fw: upstream_for(settings.server_of(fw), fw, settings) for fw in FRAMEWORKS}


def build_server_upstreams(
    settings: GatewaySettings,
) -> dict[tuple[Framework, ServerKind], Upstream]:
    """The clients of arms that name a server other than their framework's configured one
    (`Arm.server`): pytorch on the OIP server when `oip` lists a replica address and
    pytorch's configured server is TorchServe, or pytorch on TorchServe when it is `oip`.
    Keyed by (framework, server); an arm naming a server with no client here gets 503."""
    built: dict[tuple[Framework, ServerKind], Upstream] = {}
    for server in ("torchserve", "oip"):
        block = settings.upstream_settings(server)
        if server != settings.server_of("pytorch") and block.addresses:
            built[("pytorch", server)] = upstream_for(server, "pytorch", settings)
    return built


def upstream_for(server: ServerKind, framework: Framework, settings: GatewaySettings) -> Upstream:
    """The client of `framework`'s arm on `server`, from that server's settings block
    (`tensorflow`, `pytorch` or `oip`).

    Raises:
        ValueError: no replica address for the transport, or a server that does not
            serve `framework` (TF Serving only tensorflow, TorchServe only pytorch).
    """
    short = settings.breaker.min_timeout_s  # shorter attempts judge no replica either
    if server == "oip":
        return oip_upstream(settings.oip, framework, short)
    if server == "tfserving" and framework == "tensorflow":
        return tensorflow_upstream(settings.tensorflow, short)
    if server == "torchserve" and framework == "pytorch":
        return pytorch_upstream(settings.pytorch, short)
    raise ValueError(f"{server} does not serve {framework} models")


def oip_upstream(
    settings: UpstreamSettings, framework: Framework, min_verdict_s: float = 0.0
) -> Upstream:
    """An Open Inference Protocol server (Triton, KServe, OVMS, `backends/oip`) for one arm."""
    _require_addresses("oip", settings)
    if settings.transport == "grpc":
        return PooledUpstream(settings, OipGrpc(framework), GrpcWire(settings), min_verdict_s)
    return PooledUpstream(settings, OipRest(framework), RestWire(settings), min_verdict_s)


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
