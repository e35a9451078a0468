"""A Ray worker's side of the cluster's rate gate: leases taken and given back in batches.

One gate round trip per model call (acquire, then release) cost the gate actor ~2.5 ms of CPU per cell and
each worker two actor calls more (`experiments/benchmarks/scale.py`). Here a worker asks for the leases its
waiting calls need plus `prefetch` more in one `RateGate.exchange`, keeps the surplus for its next calls, and
reports completed leases with its next ask (or after `flush_s` when none comes). Leases unused for `idle_s`
are given back, so a worker that went quiet does not hold the limit. Why that never lets the endpoint see more
than the limit: `rate_gate`'s docstring. With a tokens-per-minute limit a lease is sized for its call, so
nothing is kept in stock (`prefetch` 0) and only the asks of calls waiting together are batched.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class LeaseStock:
    """Leases of one endpoint for one worker's event loop; `take` before a call, `give` after it."""

    def __init__(self, gate: Any, key: str, prefetch: int, flush_s: float = 0.2, idle_s: float = 1.0):
        self.gate, self.key, self.prefetch = gate, key, prefetch
        self.flush_s, self.idle_s = flush_s, idle_s
        self.stock: deque[tuple[int, float]] = deque()  # (lease, granted at), oldest first
        self.waiters: deque[tuple[float, asyncio.Future]] = deque()
        self.done: list[int] = []  # completed, not yet reported
        self.unused: list[int] = []  # to give back
        self.asking: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.round_trips = 0

    async def take(self, tokens: float) -> int:
        loop = asyncio.get_running_loop()
        if self.stock and not self.waiters:
            return self.stock.popleft()[0]
        future = loop.create_future()
        self.waiters.append((tokens, future))
        if self.asking is None:
            self.asking = loop.create_task(self._ask())
        return await future

    def give(self, lease: int) -> None:
        self.done.append(lease)
        self._arm()

    async def _ask(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while self.waiters and self.waiters[0][1].done():
                    self.waiters.popleft()  # cancelled while it waited
                if not self.waiters:
                    return
                wants = [t for t, f in self.waiters if not f.done()] + [1.0] * self.prefetch
                done, self.done = self.done, []
                unused, self.unused = self.unused, []
                self.round_trips += 1
                leases = await self.gate.exchange.remote(self.key, done, unused, wants)
                now = loop.time()
                for lease in leases:
                    while self.waiters and self.waiters[0][1].done():
                        self.waiters.popleft()
                    if self.waiters:
                        self.waiters.popleft()[1].set_result(lease)
                    elif self.prefetch:
                        self.stock.append((lease, now))
                    else:
                        self.unused.append(lease)  # sized for a call that went away: never reused
                self._arm()
        except BaseException as exc:  # the gate is gone: every waiting call fails with its error
            for _, future in self.waiters:
                if not future.done():
                    future.set_exception(exc)
            self.waiters.clear()
        finally:
            self.asking = None

    def _arm(self) -> None:
        if self.timer is None and (self.done or self.unused or self.stock):
            self.timer = asyncio.get_running_loop().call_later(self.flush_s, self._flush)

    def _flush(self) -> None:
        """Report completions nobody's ask carried, give back leases idle for `idle_s` (fire and forget)."""
        self.timer = None
        now = asyncio.get_running_loop().time()
        while self.stock and now - self.stock[0][1] >= self.idle_s:
            self.unused.append(self.stock.popleft()[0])
        if self.done or self.unused:
            done, self.done = self.done, []
            unused, self.unused = self.unused, []
            self.round_trips += 1
            self.gate.exchange.remote(self.key, done, unused, [])
        self._arm()

    def close(self) -> None:
        """Everything back to the gate (the worker is done with this sweep)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.unused += [lease for lease, _ in self.stock]
        self.stock.clear()
        if self.done or self.unused:
            self.gate.exchange.remote(self.key, self.done, self.unused, [])
            self.done, self.unused = [], []
