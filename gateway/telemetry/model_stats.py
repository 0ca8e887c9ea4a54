"""Per model and version inference statistics, in the shape of Triton's statistics
extension (docs/protocol/extension_statistics.md), from what the gateway measures.

An outcome observer (`gateway.core.outcome`): each final call the router made for a client
(primary or failover; shadow copies are not the client's) adds to its model and version.
What each figure means for a gateway, which runs no model itself:

- `success` / `fail`: requests the router took that were answered / failed, and their
  time from the router taking the request to the answer or error (`elapsed_s`: routing,
  a failed primary before a failover, the backend call). A request refused before routing
  (malformed body, unknown model, admission) is in neither: it never reached a model; the
  ingress counts it on /metrics.
- `queue`: per success, the time before its answering backend call began (routing, and a
  failed primary before a failover); the backend's own queue is inside `compute_infer`.
- `compute_infer`: per success, the answering backend call (the breaker check to the
  reply: the network round trip and the backend's queue and model run).
- `compute_input` / `compute_output`: per success, with 0 ns: the gateway's tensor decode
  and encode happen in the ingress, outside the router, and are not timed apart.
- `inference_count`: inferences, one per batch row (the first input's first dimension), as
  Triton counts them; `execution_count`: backend calls that answered.
- `last_inference`: milliseconds since the epoch of the last success (0: none yet).

Figures are per worker process (each worker observes its own requests), from its start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.core.errors import GatewayError
from gateway.core.outcome import CallOutcome
from gateway.core.types import InferRequest

_NS = 1_000_000_000


@dataclass
class Duration:
    """A count and a total duration in nanoseconds (Triton's `StatisticDuration`)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, round(seconds * _NS))


@dataclass
class VersionStatistics:
    """One model version's figures (Triton's `ModelStatistics` less batch and memory)."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


VersionOf = Callable[[InferRequest], int]


class ModelStatistics:
    """{(model, version): VersionStatistics}, fed by `observe`.

    Args:
        version_of: the version a failed request addressed (its answer would have named
            it): the catalog's resolution of the request's version or label.
    """

    def __init__(self, version_of: VersionOf) -> None:
        self._stats: dict[tuple[str, int], VersionStatistics] = {}
        self._version_of = version_of

    def get(self, model: str, version: int) -> VersionStatistics:
        """The figures of one version (all zero when it has served nothing)."""
        return self._stats.get((model, version)) or VersionStatistics()

    def observe(self, outcome: CallOutcome) -> None:
        """Add one routed call's outcome (only the final, client-facing ones count)."""
        if outcome.kind == "shadow" or not outcome.final:
            return
        version = outcome.response.version if outcome.response else self._version(outcome)
        if version is None:
            return
        key = (outcome.request.model, version)
        stats = self._stats.setdefault(key, VersionStatistics())
        if outcome.response is None:
            stats.fail.add(outcome.elapsed_s)
            return
        stats.success.add(outcome.elapsed_s)
        stats.queue.add(outcome.elapsed_s - outcome.latency_s)
        stats.compute_infer.add(outcome.latency_s)
        stats.compute_input.add(0.0)
        stats.compute_output.add(0.0)
        stats.execution_count += 1
        stats.inference_count += _batch_rows(outcome)
        stats.last_inference_ms = round(outcome.ts * 1000)

    def _version(self, outcome: CallOutcome) -> int | None:
        try:
            return self._version_of(outcome.request)
        except GatewayError:  # an unknown version: no statistics of its own
            return None


def _batch_rows(outcome: CallOutcome) -> int:
    """Rows of the request's first input (1 for a scalar or an input-less request)."""
    first = next(iter(outcome.request.inputs.values()), None)
    if first is None or first.ndim == 0:
        return 1
    return int(first.shape[0])
