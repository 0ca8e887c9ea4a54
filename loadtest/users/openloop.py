"""Open-loop arrival inside one Locust process: scheduled send times and dropped requests.

A closed-loop user sends its next request when the previous answer came, so a stalling
server slows the load down and hides its own stall (coordinated omission). In an open
loop requests arrive on a schedule whatever the answers do, as in wrk2, k6's
`constant-arrival-rate` and perf_analyzer's `--request-rate-range`:

- `Schedule` draws the send times of one process: a Poisson process (exponential gaps)
  or a constant rate, at the process's share of the offered rate (`--workers` processes
  each run rate/N; independent Poisson processes add up to one at the full rate).
- Locust users stay the load engine: each user is one connection that can hold one
  request in flight. A free user claims the next scheduled time, sleeps until it, sends,
  and the recorder measures the latency from the *scheduled* time, so time spent waiting
  for a free connection or a busy CPU counts against the server's answer.
- A scheduled request no user could send within `MAX_LATENESS_S` of its time (every
  connection busy, or the process too busy to run) is *dropped*: counted and reported,
  never silently skipped (k6's `dropped_iterations`). Past the server's capacity the
  in-flight requests stay busy, the schedule runs ahead, and the drops count the excess.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

ARRIVALS = ("poisson", "constant")
MAX_LATENESS_S = 0.05  # later than this, a scheduled request counts as dropped


class Schedule:
    """Send times of one process at `rate` requests/s (a `ARRIVALS` process).

    Args:
        rate: requests per second offered by this process; > 0.
        arrival: "poisson" (exponential gaps) or "constant" (1/rate apart).
        on_drop: called with each dropped request's scheduled time (perf_counter seconds).
        rng: the random source of Poisson gaps (seeded in tests).
        max_lateness_s: a request not sent by its time plus this is dropped.

    Raises:
        ValueError: for an unknown arrival or a rate that is not positive.
    """

    def __init__(
        self,
        rate: float,
        arrival: str,
        on_drop: Callable[[float], None],
        rng: random.Random | None = None,
        max_lateness_s: float = MAX_LATENESS_S,
    ) -> None:
        if arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got '{arrival}'")
        if not rate > 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        self.rate, self.arrival = rate, arrival
        self.on_drop = on_drop
        self.rng = rng or random.Random()
        self.max_lateness_s = max_lateness_s
        self._next: float | None = None

    def gap(self) -> float:
        """Seconds to the next arrival."""
        if self.arrival == "poisson":
            return self.rng.expovariate(self.rate)
        return 1.0 / self.rate

    def start(self, now: float) -> None:
        """The first arrival comes one gap after `now`."""
        self._next = now + self.gap()

    def claim(self, now: float) -> float:
        """The next scheduled time a free user should send at (maybe in the future);
        scheduled times already too late to send are dropped on the way."""
        if self._next is None:
            self.start(now)
        while True:
            scheduled = self._take()
            if now - scheduled <= self.max_lateness_s:
                return scheduled
            self.on_drop(scheduled)

    def drop_unclaimed(self, now: float) -> None:
        """At the end: the times no user claimed and that are already too late count as
        dropped (the users were all busy)."""
        while self._next is not None and now - self._next > self.max_lateness_s:
            self.on_drop(self._take())

    def _take(self) -> float:
        assert self._next is not None
        scheduled, self._next = self._next, self._next + self.gap()
        return scheduled


_schedule: Schedule | None = None


def install(schedule: Schedule | None) -> None:
    """Make `schedule` the one this process's users follow (None: closed loop)."""
    global _schedule
    _schedule = schedule


def installed() -> Schedule | None:
    return _schedule


def wait_for_turn() -> float | None:
    """In an open-loop process: claim the next scheduled time, sleep (cooperatively)
    until it, and return it (perf_counter seconds) for the request's context. In a
    closed-loop process: None, at once."""
    if _schedule is None:
        return None
    import gevent

    scheduled = _schedule.claim(time.perf_counter())
    delay = scheduled - time.perf_counter()
    if delay > 0:
        gevent.sleep(delay)
    return scheduled
