"""When chat requests reached the fake endpoint: the scale-out benchmark checks a cluster-wide rate limit
where a provider would, at the endpoint (`GET /arrivals`, reset with `/stats/reset`)."""

from __future__ import annotations

import time


class Arrivals:
    def __init__(self) -> None:
        self.times: list[float] = []

    def note(self) -> None:
        self.times.append(time.monotonic())

    def reset(self) -> None:
        self.times = []


def max_in_window(times: list[float], seconds: float) -> int:
    """The most arrivals in any half-open window [t, t + seconds)."""
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - seconds:
            j += 1
        best = max(best, i - j + 1)
    return best
