"""The objects one gateway process wires together, shared by every ingress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.edge.admission import Admission
from gateway.edge.auth import Authenticator
from gateway.catalog import Catalog
from gateway.control.plane import ControlPlane
from gateway.dataplane import DataPlane
from gateway.edge.drain import Drain
from gateway.telemetry.metrics import GatewayMetrics
from gateway.routing.policy_store import PolicyStore
from gateway.routing.router import Router
from gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from gateway.catalog_follower import CatalogFollower
    from gateway.experiments.service import ExperimentService
    from gateway.routing.shadow import ShadowMirror
    from gateway.experiments.stats.live import ExperimentStats


@dataclass
class GatewayContext:
    """Everything one gateway process serves with.

    Attributes:
        control: the control-plane connection every process follows (policy layers,
            experiments' state).
        policies: the one owner of routing policy.
        stats: this process's live per-arm statistics (an outcome observer).
        mirror: the shadow calls' queue and workers.
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
    admission: Admission
    drain: Drain
    follower: CatalogFollower | None = None
    """Keeps `catalog` in step with the backends (None: the manifest is read once)."""
