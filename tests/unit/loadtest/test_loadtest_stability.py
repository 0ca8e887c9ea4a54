"""The stability rule (perf_analyzer's), the stop decision and the saturation flag."""

from __future__ import annotations

from loadtest.pinning import parse_cpus, plan_pinning
from loadtest.users.stability import (
    StabilityRule,
    Window,
    is_stable,
    saturated,
    should_stop,
    within,
)

RULE = StabilityRule(window_s=1.0, windows=3, tolerance=0.10)


def _w(requests: int, latency_ms: float = 2.0) -> Window:
    return Window(1.0, requests, requests * latency_ms)


def test_within_tolerance_of_the_mean() -> None:
    assert within([100, 105, 95], 0.10)
    assert not within([100, 100, 125], 0.10)
    assert not within([], 0.10) and not within([0, 0], 0.10)


def test_stable_needs_enough_windows_and_both_measures() -> None:
    assert not is_stable([_w(100), _w(100)], RULE)
    assert is_stable([_w(10), _w(100), _w(102), _w(98)], RULE)  # only the last three count
    assert not is_stable([_w(100, 2.0), _w(100, 2.0), _w(100, 3.0)], RULE)  # latency drifts
    assert not is_stable([_w(0), _w(0), _w(0)], RULE)


def test_should_stop_respects_minimum_and_cap() -> None:
    steady = [_w(100)] * 3
    assert should_stop(steady, measured_s=2.0, min_s=5.0, cap_s=10.0, rule=RULE) is None
    assert should_stop(steady, measured_s=5.0, min_s=5.0, cap_s=10.0, rule=RULE) == "stable"
    noisy = [_w(50), _w(100), _w(150)]
    assert should_stop(noisy, measured_s=6.0, min_s=5.0, cap_s=10.0, rule=RULE) is None
    assert should_stop(noisy, measured_s=10.0, min_s=5.0, cap_s=10.0, rule=RULE) == "capped"


def test_saturation_flag_past_ninety_percent_of_a_core() -> None:
    assert saturated(cpu_seconds=4.6, wall_seconds=5.0)
    assert not saturated(cpu_seconds=4.4, wall_seconds=5.0)
    assert not saturated(cpu_seconds=1.0, wall_seconds=0.0)


def test_cpu_pinning_plans() -> None:
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    auto = plan_pinning("auto", [0, 1, 2, 3, 4, 5, 6, 7])
    assert auto.loadgen == {6, 7} and auto.servers == {0, 1, 2, 3, 4, 5}
    assert plan_pinning("3/0-2", [0, 1, 2, 3]).loadgen == {3}
    assert plan_pinning("auto", [0]).loadgen is None  # one core: nothing to split
    assert plan_pinning("none", [0, 1]).describe() == "none"
