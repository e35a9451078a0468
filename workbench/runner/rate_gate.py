"""The cluster-wide rate limit: one gate (a Ray actor on a cluster) admits every model call of every worker.

Why a sliding log of *completions* plus the calls *in flight*, not a token bucket: a bucket bounds what it
grants, but a call reaches the endpoint a little after its grant (network, event loops), so grants spaced
within the limit can still arrive bunched. Here a call counts from its grant until it completes, then for
one window after its completion. Proof that no window [t, t+W) at the endpoint sees more than `limit`
arrivals: take the arrival in it whose grant g came last. Every other arrival a_i in the window was granted
at g_i <= g and either had not completed at g (in flight) or completed at c_i with t <= a_i <= c_i <= g, so
within the last W before g (g < t + W). All of them were counted when g was admitted, and admission needs
counted + 1 <= limit. A lease not released (its worker died) counts as completed when it expires, which is
after the call's own timeout (`lease_s`), so its arrival is still before the expiry it is logged at.
Workers take leases in batches and report completions late (`ray_leases`): a lease held unused counts as in
flight from its grant (its call, if any, arrives later: the proof's a_i >= g_i), a completion logged after
it happened is logged at a time still after its arrival, and a lease given back unused had no arrival at all,
so none of the three weakens the bound; they only hold a place a little longer.

Requests per minute are enforced over 60 s and, to spread them, ceil(rpm / 6) over every 10 s; tokens per
minute over 60 s (a call's token estimate is capped at the limit, as the local limiter does). The price of
the proof: a call holds its place for its latency plus the window, so a window of W s admits about
W / (W + latency) of its limit (10 s windows and 0.2 s calls: 98 %); shorter sub-windows would cost more.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

REQUESTS, TOKENS = 0, 1


@dataclass
class Window:
    """At most `limit` of one weight (requests or tokens) in flight or completed within `seconds`."""

    seconds: float
    limit: float
    kind: int  # REQUESTS or TOKENS
    done: deque = field(default_factory=deque)  # (completed at, weight), oldest first
    done_weight: float = 0.0
    in_flight: float = 0.0

    def prune(self, now: float) -> None:
        while self.done and self.done[0][0] <= now - self.seconds:
            self.done_weight -= self.done.popleft()[1]

    def fits(self, weight: float) -> bool:
        return self.in_flight + self.done_weight + min(weight, self.limit) <= self.limit + 1e-9


def windows_for(rpm: float | None, tpm: float | None) -> list[Window]:
    """The windows a spec's per-endpoint limits stand for."""
    out = []
    if rpm:
        out += [Window(60.0, rpm, REQUESTS), Window(10.0, max(1, math.ceil(rpm / 6)), REQUESTS)]
    if tpm:
        out.append(Window(60.0, tpm, TOKENS))
    return out


class SlidingGate:
    """The pure core (no clock of its own, no asyncio): admit, complete, expire."""

    def __init__(self, windows: list[Window], lease_s: float):
        self.windows = windows
        self.lease_s = lease_s
        self.leases: dict[int, tuple[float, float]] = {}  # id -> (tokens, expires at)
        self._ids = itertools.count(1)
        self.admitted = 0

    def _weights(self, tokens: float, w: Window) -> float:
        return min(1.0 if w.kind == REQUESTS else float(tokens), w.limit)

    def admit(self, now: float, tokens: float) -> int | None:
        """A lease id, or None when any window is full (try again at `next_change`)."""
        self.expire(now)
        for w in self.windows:
            w.prune(now)
            if not w.fits(self._weights(tokens, w)):
                return None
        for w in self.windows:
            w.in_flight += self._weights(tokens, w)
        lease = next(self._ids)
        self.leases[lease] = (tokens, now + self.lease_s)
        self.admitted += 1
        return lease

    def complete(self, now: float, lease: int) -> None:
        held = self.leases.pop(lease, None)
        if held is None:
            return  # already expired (and logged then)
        for w in self.windows:
            weight = self._weights(held[0], w)
            w.in_flight -= weight
            w.done.append((now, weight))
            w.done_weight += weight

    def cancel(self, lease: int) -> None:
        """A lease never used (no call was made with it): its place is free at once, nothing is logged."""
        held = self.leases.pop(lease, None)
        if held is not None:
            self.admitted -= 1  # counts the calls let through
            for w in self.windows:
                w.in_flight -= self._weights(held[0], w)

    def expire(self, now: float) -> None:
        for lease, (_, expires) in [(k, v) for k, v in self.leases.items() if v[1] <= now]:
            self.complete(expires, lease)

    def next_change(self, now: float) -> float:
        """Seconds until a full window may have room again (its oldest completion leaves, a lease expires)."""
        times = [w.done[0][0] + w.seconds for w in self.windows if w.done]
        times += [expires for _, expires in self.leases.values()]
        return max(0.001, min(times) - now) if times else 0.05


class RateGate:
    """The gate for every endpoint of a sweep, FIFO per endpoint; run as a Ray actor (async methods) by
    `runner.ray_backend`. Waiting calls are queued here, so no worker can jump the limit."""

    def __init__(self, limits: dict[str, tuple[float | None, float | None]], lease_s: float):
        self.gates = {key: SlidingGate(windows_for(rpm, tpm), lease_s) for key, (rpm, tpm) in limits.items()}
        self.waiting: dict[str, deque] = {key: deque() for key in limits}
        self.timers: dict[str, asyncio.TimerHandle | None] = {key: None for key in limits}
        self.grants: list[float] = []  # admission times (wall clock), for the benchmark's check

    async def exchange(self, key: str, done: list[int], unused: list[int], wants: list[float]) -> list[int]:
        """A worker's one round trip for a batch (`ray_leases.LeaseStock`): the leases whose calls completed,
        the leases it never used, and leases for a prefix of `wants` (each a call's token estimate): as many
        as fit now, at least the first (waiting for it, in line)."""
        gate, now = self.gates[key], time.monotonic()
        for lease in done:
            gate.complete(now, lease)
        for lease in unused:
            gate.cancel(lease)
        if not wants:
            self._pump(key)
            return []
        future = asyncio.get_running_loop().create_future()
        self.waiting[key].append((wants, future))
        self._pump(key)
        return await future

    async def admitted(self) -> dict[str, int]:
        return {key: gate.admitted for key, gate in self.gates.items()}

    async def cpu_s(self) -> float:
        """This process's CPU seconds (the gate's actor process: what admitting the sweep's calls cost)."""
        return time.process_time()

    def _pump(self, key: str) -> None:
        gate, queue, now = self.gates[key], self.waiting[key], time.monotonic()
        while queue:
            wants, future = queue[0]
            if future.done():  # the caller went away
                queue.popleft()
                continue
            granted = []
            for tokens in wants:
                lease = gate.admit(now, tokens)
                if lease is None:
                    break
                granted.append(lease)
            if not granted:
                break
            queue.popleft()
            future.set_result(granted)
            if len(granted) < len(wants):
                break  # full: the next in line waits for room
        if queue and self.timers[key] is None:
            def wake() -> None:
                self.timers[key] = None
                self._pump(key)

            self.timers[key] = asyncio.get_running_loop().call_later(gate.next_change(now), wake)
