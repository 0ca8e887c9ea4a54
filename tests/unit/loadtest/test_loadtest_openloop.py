"""The open-loop schedule: arrival times, lateness and dropped requests (no Locust here:
importing it would monkey-patch the test process with gevent)."""

from __future__ import annotations

import random

import pytest
from scipy import stats

from loadtest.users.openloop import Schedule


def _constant(rate: float, drops: list[float]) -> Schedule:
    schedule = Schedule(rate, "constant", drops.append, max_lateness_s=0.05)
    schedule.start(0.0)
    return schedule


def test_constant_rate_sends_on_time_when_users_are_free() -> None:
    drops: list[float] = []
    schedule = _constant(10.0, drops)
    assert schedule.claim(0.0) == pytest.approx(0.1)  # the future: the user sleeps until it
    assert schedule.claim(0.15) == pytest.approx(0.2)
    assert drops == []


def test_requests_no_user_could_send_in_time_are_dropped() -> None:
    # all users were busy from 0.1 s to 1.0 s: the ones scheduled at 0.2 ... 0.9 s are more
    # than 50 ms late when a user frees, so they are counted, and 1.0 s is sent
    drops: list[float] = []
    schedule = _constant(10.0, drops)
    schedule.claim(0.0)
    assert schedule.claim(1.0) == pytest.approx(1.0)
    assert drops == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_a_request_late_within_the_limit_is_sent_not_dropped() -> None:
    drops: list[float] = []
    schedule = _constant(10.0, drops)
    assert schedule.claim(0.14) == pytest.approx(0.1)  # 40 ms late: sent, latency counts it
    assert drops == []


def test_unclaimed_times_at_the_end_count_as_dropped() -> None:
    drops: list[float] = []
    schedule = _constant(10.0, drops)
    schedule.claim(0.0)  # 0.1 taken, then every user stays busy
    schedule.drop_unclaimed(0.58)
    assert drops == pytest.approx([0.2, 0.3, 0.4, 0.5])  # 0.6 is not late yet


def test_poisson_gaps_are_exponential_at_the_rate() -> None:
    schedule = Schedule(200.0, "poisson", lambda _: None, rng=random.Random(7))
    gaps = [schedule.gap() for _ in range(4000)]
    result = stats.kstest(gaps, "expon", args=(0, 1 / 200.0))
    assert result.pvalue > 0.01
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 200.0, rel=0.06)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="arrival"):
        Schedule(10.0, "bursty", lambda _: None)
    with pytest.raises(ValueError, match="rate"):
        Schedule(0.0, "poisson", lambda _: None)
