"""Model calls for a sweep: bounded per endpoint, rate limited and retried.

Concurrency is per endpoint (an asyncio semaphore per base_url), so a slow local server and a fast
remote API each get what they can take. Transport failures (429 with Retry-After, 5xx, timeouts,
connection errors) are retried by the `openai` client itself; `timeout_s` bounds each whole attempt,
however slowly the server trickles its reply. A 200 with an unusable body (not JSON, no or odd choices,
no message: any `BadResponse`) is retried here with tenacity, then the caller records the cell as
failed. Both back off exponentially with jitter.
The executor is swappable: the sweep only calls `generate(model, messages)`.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from workbench.spec import ExecutionConfig
from workbench.rag.chat import BadResponse, ChatModel, Generation


class Cancelled(Exception):
    """The sweep was cancelled while this call waited for its turn; it never reached the endpoint."""


class PrioritySemaphore:
    """A semaphore that admits waiters lowest priority number first (FIFO within one number).

    The sweep numbers its variants, so a free slot goes to the earliest unfinished variant: variants
    then finish one after another, and each is logged (and shown) while the next one runs, instead of
    all of them finishing together at the end of the sweep.
    """

    def __init__(self, value: int):
        self._value = value
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._arrival = itertools.count()

    async def acquire(self, priority: int = 0) -> None:
        if self._value > 0:  # a free slot means nobody is waiting (release hands slots to waiters first)
            self._value -= 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrival), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted a slot just as we were cancelled: hand it on
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._value += 1


class EndpointLimits:
    """What one endpoint admits: requests in flight, requests and tokens per minute. The sweep's executor
    and the judge both admit every request through one of these (bind it to one event loop by using it)."""

    def __init__(self, concurrency: int, rpm: float | None, tpm: float | None):
        self.semaphore = PrioritySemaphore(concurrency)
        self.rpm = AsyncLimiter(rpm, 60) if rpm else None
        self.tpm = AsyncLimiter(tpm, 60) if tpm else None
        self.admitted = 0  # requests let through so far

    @classmethod
    def for_endpoint(cls, execution: ExecutionConfig, local: bool) -> EndpointLimits:
        """The spec's limits for one endpoint (the local server answers one request at a time)."""
        n = execution.local_concurrency if local else execution.concurrency
        return cls(n, execution.requests_per_minute, execution.tokens_per_minute)

    @asynccontextmanager
    async def admit(self, tokens: int, priority: int = 0) -> AsyncIterator[None]:
        await self.acquire(tokens, priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, tokens: int, priority: int = 0) -> None:
        await self.semaphore.acquire(priority)
        try:
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None:
                await self.tpm.acquire(min(tokens, self.tpm.max_rate))
        except BaseException:
            self.semaphore.release()
            raise
        self.admitted += 1

    def release(self) -> None:
        self.semaphore.release()


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """A cheap upper-ish estimate for the token limiter (the endpoint's usage stays the truth)."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 3 + max_tokens


class Executor:
    """Runs generation calls for one sweep (create it inside the event loop that uses it)."""

    def __init__(self, execution: ExecutionConfig, cancel=None, guard=None):
        self.execution = execution
        self.cancel = cancel  # a threading.Event: calls still waiting for their turn are dropped
        # consulted as each call is about to start (runner.budget.BudgetGuard): admit(cfg, messages) answers
        # a ticket, or None to refuse the call; settle(ticket, generation or None) when it ended
        self.guard = guard
        self._limits: dict[str, EndpointLimits] = {}
        self.calls = 0  # requests that reached an endpoint and succeeded
        self.attempts = 0  # including retried bad responses
        self.started = time.perf_counter()
        self.answered = asyncio.Event()  # set by the first successful call (work that can wait, waits for it)

    def _limits_for(self, model: ChatModel) -> EndpointLimits:
        key = str(model.base_url)
        if key not in self._limits:
            self._limits[key] = EndpointLimits.for_endpoint(self.execution, model.cfg.provider == "local")
        return self._limits[key]

    async def generate(self, model: ChatModel, messages: list[dict], priority: int = 0) -> Generation:
        """One model call, admitted by the endpoint's limits and retried on a bad response (the sweep's
        generation cache is read and written around it, in `runner.generations`).

        priority: lower goes first when calls wait for a slot (the sweep passes the variant's rank).
        """
        limits = self._limits_for(model)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(BadResponse),
            stop=stop_after_attempt(self.execution.max_retries + 1),
            wait=wait_exponential_jitter(multiplier=0.2, max=10),
            reraise=True,
        ):
            with attempt:
                await limits.acquire(estimate_tokens(messages, model.cfg.max_tokens), priority)
                if self.cancel is not None and self.cancel.is_set():
                    limits.release()
                    raise Cancelled()
                ticket = self.guard.admit(model.cfg, messages) if self.guard is not None else None
                if inspect.isawaitable(ticket):  # a cluster's shared guard (runner.ray_budget) answers remotely
                    ticket = await ticket
                if self.guard is not None and ticket is None:
                    limits.release()
                    raise Cancelled()  # over budget: never started
                gen = None
                try:
                    self.attempts += 1
                    gen = await model.agenerate(messages)
                finally:
                    limits.release()
                    if ticket is not None and inspect.isawaitable(settled := self.guard.settle(ticket, gen)):
                        await settled
        self.calls += 1
        self.answered.set()
        return gen

    def rate(self) -> float:
        return self.calls / max(1e-9, time.perf_counter() - self.started)
