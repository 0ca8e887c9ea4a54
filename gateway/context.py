"""The objects one gateway process wires together, shared by every ingress."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.admission import Admission
from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.dataplane import DataPlane
from gateway.drain import Drain
from gateway.metrics import GatewayMetrics
from gateway.routing.router import Router
from gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from gateway.experiments.service import ExperimentService


@dataclass
class GatewayContext:
    settings: GatewaySettings
    catalog: Catalog
    router: Router
    dataplane: DataPlane
    metrics: GatewayMetrics
    auth: Authenticator
    experiments: ExperimentService
    admission: Admission
    drain: Drain
