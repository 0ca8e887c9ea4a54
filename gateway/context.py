"""The objects one gateway process wires together, shared by every ingress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.catalog import Catalog
from gateway.control.plane import ControlPlane
from gateway.dataplane import DataPlane
from gateway.edge.admission import Admission
from gateway.edge.auth import Authenticator
from gateway.edge.boundary import Edge
from gateway.edge.drain import Drain
from gateway.routing.policy_store import PolicyStore
from gateway.routing.router import Router
from gateway.settings import GatewaySettings
from gateway.telemetry.metrics import GatewayMetrics
from gateway.telemetry.model_stats import ModelStatistics

if TYPE_CHECKING:
    from gateway.capture.sink import CaptureSink
    from gateway.control.catalog_follower import CatalogFollower
    from gateway.experiments.service import ExperimentService
    from gateway.experiments.stats.live import ExperimentStats
    from gateway.routing.shadow import ShadowMirror


@dataclass
class GatewayContext:
    """Everything one gateway process serves with.

    Attributes:
        control: the control-plane connection every process follows (policy layers,
            experiments' state).
        policies: the one owner of routing policy.
        stats: this process's live per-arm statistics (an outcome observer).
        mirror: the shadow calls' queue and workers.
        edge: admission, error counting and error shaping, for every transport.
        model_stats: per model and version inference statistics (an outcome observer;
            Triton's statistics extension reads it).
    """

    settings: GatewaySettings
    catalog: Catalog
    router: Router
    dataplane: DataPlane
    metrics: GatewayMetrics
    auth: Authenticator
    experiments: ExperimentService
    control: ControlPlane
    policies: PolicyStore
    stats: ExperimentStats
    mirror: ShadowMirror
    edge: Edge
    drain: Drain
    model_stats: ModelStatistics
    follower: CatalogFollower | None = None
    """Keeps `catalog` in step with the backends (None: the manifest is read once)."""
    capture: CaptureSink | None = None
    """The capture's observer and writer thread (None: capture is off)."""

    @property
    def admission(self) -> Admission:
        """The worker's bound on requests in flight (the edge's)."""
        return self.edge.admission
