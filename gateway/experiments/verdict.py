"""Plain-language verdicts from an analysis' numbers; they never claim more than the tests."""

from __future__ import annotations

from typing import Any


def _p(p: float) -> str:
    return "p < 0.01" if p < 0.01 else f"p = {p:.2f}"


def latency_verdict(latency: dict[str, Any], a: str, b: str, alpha: float) -> str:
    p, diff = latency["p_value"], latency["p50_diff_ms"]
    if p is None or diff is None:
        return "latency: not enough successful requests on both arms yet"
    if p >= alpha:
        return f"latency: no significant difference yet ({_p(p)})"
    faster = a if diff > 0 else b
    return f"{faster} faster at p50 by {abs(diff):.3f} ms, {_p(p)}"


def accuracy_verdict(accuracy: dict[str, Any], a: str, b: str, alpha: float) -> str:
    p, diff, more = accuracy["p_value"], accuracy["diff"], accuracy["more_needed_per_arm"]
    if p is None:
        return "accuracy: no labelled requests on both arms yet (POST /v1/feedback)"
    if p < alpha:
        better = b if diff > 0 else a
        return f"{better} more accurate by {abs(diff) * 100:.1f} points, {_p(p)}"
    if more:
        return (
            f"accuracy: no significant difference yet ({_p(p)}); "
            f"about {more} more labelled requests per arm needed"
        )
    return f"accuracy: no significant difference ({_p(p)}) with the planned sample"


def sample_verdict(sample: dict[str, Any]) -> str:
    size = sample["size_per_arm"]
    if size is None:
        return "no sample size configured: results may change as data arrives (peeking)"
    if sample["reached"]:
        return f"sample size of {size} per arm reached: the results above are final"
    served = ", ".join(f"{arm} {n}" for arm, n in sample["served_per_arm"].items())
    return f"sample size of {size} per arm not reached yet ({served}): results are provisional"


def verdicts(result: dict[str, Any], alpha: float) -> list[str]:
    a, b = result["comparison"]["arms"]
    return [
        latency_verdict(result["comparison"]["latency"], a, b, alpha),
        accuracy_verdict(result["comparison"]["accuracy"], a, b, alpha),
        sample_verdict(result["sample"]),
    ]
