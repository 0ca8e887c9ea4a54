"""Live per-model, per-arm statistics of THIS process: counts, errors, latency, shadow.

Arms are keyed by name (`gateway.core.arms`: `tensorflow`/`pytorch` for a config that
names none), the arm each call counts for (`CallOutcome.arm_name`).

An observer of the router's outcomes (`observe`). Each gateway process keeps its own;
the figures that cover every process come from the prediction log (`LogStore.summary`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.core.outcome import CallOutcome
from gateway.telemetry.histogram import LatencyHistogram


def error_rate(errors: int, requests: int) -> float:
    """Failed share of an arm's requests, 6 decimals (0.0 before any request): the one
    definition behind live statistics and the log's live figures (the analysis's ratio
    estimate over routing keys, `experiments.clustered`, is the same value with its
    cluster-adjusted interval)."""
    return round(errors / requests, 6) if requests else 0.0


@dataclass
class ArmStats:
    requests: int = 0
    failovers_in: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def as_dict(self) -> dict[str, Any]:
        errors = sum(self.errors.values())
        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "error_rate": error_rate(errors, self.requests),
            "answered_after_failover": self.failovers_in,
            "latency_ms": self.latency.summary_ms(),
        }


@dataclass
class ShadowStats:
    compared: int = 0
    agreed: int = 0
    max_abs_diff: float = 0.0
    errors: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "top1_agreement": round(self.agreed / self.compared, 6) if self.compared else None,
            "max_abs_diff": self.max_abs_diff,
            "errors": self.errors,
            "dropped": self.dropped,
        }


class ExperimentStats:
    """All arms of all models; single-threaded (the event loop), so no locks."""

    def __init__(self) -> None:
        self._arms: dict[tuple[str, str], ArmStats] = {}
        self._shadow: dict[str, ShadowStats] = {}

    def reset(self) -> None:
        self._arms.clear()
        self._shadow.clear()

    def arm(self, model: str, arm: str) -> ArmStats:
        stats = self._arms.get((model, arm))
        if stats is None:  # not setdefault: that would build a histogram per call
            stats = self._arms[(model, arm)] = ArmStats()
        return stats

    def shadow(self, model: str) -> ShadowStats:
        stats = self._shadow.get(model)
        if stats is None:
            stats = self._shadow[model] = ShadowStats()
        return stats

    def observe(self, outcome: CallOutcome) -> None:
        """Count one upstream call: answered calls by arm, shadow calls apart."""
        model = outcome.request.model
        if outcome.kind == "shadow":
            if outcome.comparison is not None:
                result = outcome.comparison
                self.record_shadow(model, result.agreed, result.max_abs_diff)
            elif outcome.error is not None:
                self.shadow(model).errors += 1
            return
        arm = outcome.arm_name or outcome.arm
        if outcome.error is not None:
            self.record_error(model, arm, outcome.error)
            return
        self.record_success(model, arm, outcome.latency_s)
        if outcome.kind == "failover":
            self.arm(model, arm).failovers_in += 1

    def dropped(self, model: str) -> None:
        """A mirrored call the shadow queue had no room for."""
        self.shadow(model).dropped += 1

    def record_success(self, model: str, arm: str, seconds: float) -> None:
        stats = self.arm(model, arm)
        stats.requests += 1
        stats.latency.record(seconds)

    def record_error(self, model: str, arm: str, kind: str) -> None:
        stats = self.arm(model, arm)
        stats.requests += 1
        stats.errors[kind] += 1

    def record_shadow(self, model: str, agreed: bool, max_abs_diff: float) -> None:
        stats = self.shadow(model)
        stats.compared += 1
        stats.agreed += int(agreed)
        stats.max_abs_diff = max(stats.max_abs_diff, max_abs_diff)

    def snapshot(self) -> dict[str, Any]:
        """JSON for `GET /admin/experiments`."""
        models: dict[str, Any] = {}
        for (model, arm), stats in sorted(self._arms.items()):
            models.setdefault(model, {"arms": {}})["arms"][arm] = stats.as_dict()
        for model, shadow in sorted(self._shadow.items()):
            models.setdefault(model, {"arms": {}})["shadow"] = shadow.as_dict()
        return models
