"""The objects one gateway process wires together, shared by every ingress."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Authenticator
from gateway.catalog import Catalog
from gateway.dataplane import DataPlane
from gateway.metrics import GatewayMetrics
from gateway.routing.router import Router
from gateway.settings import GatewaySettings


@dataclass
class GatewayContext:
    settings: GatewaySettings
    catalog: Catalog
    router: Router
    dataplane: DataPlane
    metrics: GatewayMetrics
    auth: Authenticator
