"""The transport-free data plane: every ingress calls this, and it records the metrics.

REST and gRPC routes only decode, call `DataPlane.infer`, and encode.
"""

from __future__ import annotations

import time

from gateway.errors import GatewayError, UpstreamError
from gateway.experiments.records import Outcome, OutcomeSink
from gateway.metrics import GatewayMetrics
from gateway.routing.router import Router
from gateway.types import InferRequest, InferResponse


class DataPlane:
    def __init__(
        self, router: Router, metrics: GatewayMetrics, outcomes: OutcomeSink | None = None
    ) -> None:
        self.router = router
        self.metrics = metrics
        self.outcomes = outcomes  # the prediction log; None = not logged

    async def infer(
        self, request: InferRequest, protocol: str, strict_dtype: bool = False
    ) -> InferResponse:
        """Route one request; count it and time the gateway's own share of it.

        Failures are counted by each transport's error handler (`count_error`), which
        also sees the errors raised while decoding, before this is called."""
        started = time.perf_counter()
        try:
            response = await self.router.infer(request, strict_dtype)
        except UpstreamError as exc:  # routed, then failed: logged; bad input is not
            if self.outcomes is not None:
                self._log_failure(request, exc, time.perf_counter() - started)
            raise
        total = time.perf_counter() - started
        response.timings["total"] = total
        response.request_id = request.request_id
        model = request.model
        self.metrics.requests.labels(model, response.backend, protocol, "200").inc()
        self.metrics.latency.labels(model, response.backend, protocol).observe(total)
        upstream = response.timings.get("upstream", 0.0)
        self.metrics.overhead.labels(protocol).observe(max(total - upstream, 0.0))
        if self.outcomes is not None:
            self._log(request, response, total)
        return response

    def _log(self, request: InferRequest, response: InferResponse, total: float) -> None:
        # Only references are handed over; top-1 and hashing happen on the log's thread.
        sink = self.outcomes
        assert sink is not None
        sink.submit(
            Outcome(
                request.request_id, self._experiment(sink, request), request.model,
                response.backend, response.version, request.routing_key, total, 200,
                response.outputs, failover=response.failover,
            )
        )  # fmt: skip

    def _log_failure(self, request: InferRequest, exc: UpstreamError, total: float) -> None:
        sink = self.outcomes
        assert sink is not None
        sink.submit(
            Outcome(
                request.request_id, self._experiment(sink, request), request.model,
                exc.backend, request.version, request.routing_key, total, int(exc.status), None,
            )
        )  # fmt: skip

    def _experiment(self, sink: OutcomeSink, request: InferRequest) -> str | None:
        """The running experiment this request belongs to, if its arm was drawn by the
        weighted split. A client-pinned request (load tests, debugging) or one routed while
        an admin holds the model in pinned or shadow mode was not randomised: it is logged,
        but outside the experiment, so it cannot bias either arm's figures."""
        if request.pinned is not None or self.router.policies[request.model].mode != "weighted":
            return None
        return sink.active.get(request.model)

    def count_error(self, protocol: str, model: str | None, exc: GatewayError) -> None:
        known = model if model is not None and model in self.router.policies else "unknown"
        arm = getattr(exc, "backend", "none")
        self.metrics.requests.labels(known, arm, protocol, str(int(exc.status))).inc()
