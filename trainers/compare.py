"""Compare the exported builds: in-process latency and cross-framework agreement."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from trainers.manifest import Agreement

Predictor = Callable[[np.ndarray], dict[str, np.ndarray]]
LATENCY_BATCHES = (1, 32)


def median_latency_ms(
    predict: Predictor, inputs: np.ndarray, batch: int, repeats: int = 50
) -> float:
    """Median wall time of `repeats` calls on one batch, after a few warm-up calls."""
    sample = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
    for _ in range(5):
        predict(sample)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(sample)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def latency_profile(predict: Predictor, inputs: np.ndarray) -> dict[str, float]:
    return {f"batch_{b}": round(median_latency_ms(predict, inputs, b), 4) for b in LATENCY_BATCHES}


def agreement(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> Agreement:
    """Share of equal top-1 classes and the largest absolute probability difference."""
    return Agreement(
        top1=float(np.mean(first["class"] == second["class"])),
        max_abs_prob_diff=float(np.max(np.abs(first["probabilities"] - second["probabilities"]))),
    )
