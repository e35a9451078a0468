"""The "calls/s" a sweep's progress shows (the CLI's bar, the Run tab): model calls only.

A cell whose answer came from the generation cache (or that only retrieves) made no model call; counting
it reported thousands of "calls/s" for a cached sweep. The rate is taken between the first and the last
call answered, so time spent on cached cells or building indexes before them does not dilute it either.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def made_a_call(row: Mapping[str, Any]) -> bool:
    """The cell's answer came from a model call made in this sweep (`cached` is False; a failed or
    retrieval-only cell has no `cached` key)."""
    return row.get("cached") is False


class CallRate:
    """Model calls answered per second, fed with finished cells.

    >>> rate = CallRate()
    >>> for t, cached in [(0.0, False), (0.1, True), (0.2, True), (1.0, False), (2.0, False)]:
    ...     rate.add({"cached": cached}, now=t)
    >>> rate.calls, rate.rate()
    (3, 1.0)
    """

    def __init__(self) -> None:
        self.calls = 0
        self._first: float | None = None
        self._last: float | None = None

    def add(self, row: Mapping[str, Any], now: float | None = None) -> None:
        if not made_a_call(row):
            return
        now = time.perf_counter() if now is None else now
        self.calls += 1
        if self._first is None:
            self._first = now
        self._last = now

    def rate(self) -> float | None:
        """Calls per second between the first and the last answered call; None until two calls."""
        if self.calls < 2 or self._first is None or self._last is None or self._last <= self._first:
            return None
        return (self.calls - 1) / (self._last - self._first)

    def text(self) -> str:
        """The progress suffix: ', 2.50 calls/s', or '' before two calls."""
        rate = self.rate()
        return f", {rate:.2f} calls/s" if rate else ""
