"""The one edge every prediction passes, whatever its transport: admission, error
counting, error shaping.

The REST front door (`gateway.protocols.rest.front_door`, and the REST error handlers in
`gateway.protocols.rest.http`) and the gRPC error boundary
(`gateway.protocols.grpc.common.Boundary`) both call one `Edge`:

- `Edge.admitted(endpoint, ...)` runs a prediction holding one slot of the worker's
  `Admission` (refused with `Overloaded` before its body is read or decoded);
- `Edge.error(exc, protocol, model, where)` shapes what the client sees of a failure (a
  `GatewayError` as it is; anything else is a bug: logged with its traceback, answered as
  `InternalError` without detail) and counts it in `dualserve_requests_total` under the
  protocol and the model (one the catalog does not know is counted as `unknown`).

Each transport then writes the error in its own form (REST: `{"error": message}` with the
status; gRPC: an abort with the code). Nothing here imports a protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gateway.core.errors import GatewayError
from gateway.edge.admission import Admission
from gateway.telemetry.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error in the gateway; see its log"


class InternalError(GatewayError):
    """What a client sees of a bug in the gateway: HTTP 500 / gRPC INTERNAL and one fixed
    sentence (the traceback goes to the log, never to the client)."""

    def __init__(self) -> None:
        super().__init__(INTERNAL_MESSAGE)


class Edge:
    """Admission, error counting and error shaping for every transport of one worker.

    Args:
        admission: the worker's bound on requests in flight.
        metrics: where errors are counted (`requests`, labelled model, arm, protocol,
            status).
        models: the model names errors are counted under, asked at each error (the
            catalog follows the backends, so a model may come or go at run time); any
            other is `unknown` (a client's typo must not grow the metrics without bound).
    """

    def __init__(
        self, admission: Admission, metrics: GatewayMetrics, models: Callable[[], Iterable[str]]
    ) -> None:
        self.admission = admission
        self.metrics = metrics
        self._models = models
        self.admitted = admission.hold
        """`await endpoint(*args)` holding one admission slot (`Admission.hold`); raises
        `Overloaded` (429, RESOURCE_EXHAUSTED) without calling it when every slot is taken."""

    def error(
        self, exc: Exception, protocol: str | None, model: str | None, where: str
    ) -> GatewayError:
        """The error the client is answered with for `exc`, counted.

        Args:
            exc: what the request raised.
            protocol: the metrics label of a prediction request; None: not a prediction
                (nothing is counted).
            model: the model the request names (None: unknown yet, e.g. a body that
                does not parse).
            where: names the request in the log line of a bug (a path, a protocol).
        """
        error = exc if isinstance(exc, GatewayError) else self._bug(exc, where)
        if protocol is not None:
            self.count(protocol, model, error)
        return error

    def count(self, protocol: str, model: str | None, error: GatewayError) -> None:
        """One failed request in `dualserve_requests_total` (its arm when an upstream failed)."""
        known = model if model is not None and model in self._models() else "unknown"
        arm = getattr(error, "backend", "none")
        self.metrics.requests.labels(known, arm, protocol, str(int(error.status))).inc()

    @staticmethod
    def _bug(exc: Exception, where: str) -> InternalError:
        logger.error("unexpected error %s", where, exc_info=exc)
        return InternalError()
