"""The transport-free data plane: every ingress calls this; it records the ingress metrics.

REST and gRPC routes only decode, call `DataPlane.infer`, and encode. What happens to
each upstream call (arm statistics, the prediction log, upstream metrics) is the router's
outcome and its observers' business (`gateway.core.outcome`); this module counts what the
client saw, per protocol.
"""

from __future__ import annotations

import time

from gateway.core.types import InferRequest, InferResponse
from gateway.routing.router import Router
from gateway.telemetry.metrics import GatewayMetrics


class DataPlane:
    def __init__(self, router: Router, metrics: GatewayMetrics) -> None:
        self.router = router
        self.metrics = metrics

    async def infer(
        self, request: InferRequest, protocol: str, strict_dtype: bool = False
    ) -> InferResponse:
        """Route one request; count it and time the gateway's own share of it.

        Failures are counted by the edge (`gateway.edge.boundary.Edge.error`), which
        also sees the errors raised while decoding, before this is called."""
        started = time.perf_counter()
        response = await self.router.infer(request, strict_dtype)
        total = time.perf_counter() - started
        response.timings["total"] = total
        response.request_id = request.request_id
        upstream = response.timings.get("upstream", 0.0)
        self.metrics.answered(request.model, response.backend, protocol, total, upstream)
        return response
