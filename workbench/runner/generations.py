"""The sweep's generations with their latency provenance: cached answers say when, in which sweep and
under what load their latency was measured, and chosen questions can be re-timed past the cache.

The generation cache entry is the `Generation` plus a `measured` record (`Measured`); an entry written
before that record existed reads as "earlier run, unknown" (all None). The executor is given no cache
here: this module reads and writes it, so it can both bypass it for a re-timed question (whose answer is
still stored) and keep the provenance next to the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from workbench.errors import WorkbenchError
from workbench.rag.cache import ResultCache, generation_key
from workbench.rag.chat import ChatModel, Generation
from workbench.rag.executor import Executor
from workbench.spec import ExecutionConfig

_GENERATION_FIELDS = tuple(f.name for f in dataclasses.fields(Generation))
# fields added later have defaults (Generation.notes): an entry written before them is still a hit
_REQUIRED_FIELDS = tuple(f.name for f in dataclasses.fields(Generation) if f.default is dataclasses.MISSING)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Measured:
    """When (ISO 8601 UTC), in which sweep and under what load one model call's latency was measured:
    `in_flight` calls the sweep had at the endpoint when the answer arrived (this one included, at most
    `limit`, the endpoint's concurrency limit). None: not known (an entry cached before this existed)."""

    sweep_id: str | None = None
    at: str | None = None
    in_flight: int | None = None
    limit: int | None = None

    def fields(self) -> dict[str, Any]:
        """The Cell fields it fills."""
        return {"latency_measured_at": self.at, "latency_sweep_id": self.sweep_id,
                "latency_in_flight": self.in_flight, "latency_concurrency_limit": self.limit}


UNKNOWN = Measured()


def check_retime_count(n: Any) -> int:
    """`remeasure_latency` as given by a caller: a whole number of questions, 0 (off) or more."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise WorkbenchError(f"remeasure_latency (--remeasure-latency): give how many questions per variant to re-time, "
                             f"a whole number 0 or more (0: off); got {n!r}")
    return n


def retime_ids(question_ids: Iterable[str], n: int) -> frozenset[str]:
    """The `n` questions to re-time: the same ids for every variant (so latency stays paired) and for
    every sweep of the eval set, spread over it rather than its first `n` (ordered by a hash of the id).

    >>> sorted(retime_ids(["q1", "q2", "q3"], 2)) == sorted(retime_ids(["q3", "q2", "q1"], 2))
    True
    """
    ids = sorted(set(question_ids), key=lambda q: hashlib.sha256(q.encode("utf-8")).hexdigest())
    return frozenset(ids[:check_retime_count(n)])


def _from_entry(entry: Any) -> tuple[Generation, Measured] | None:
    """A cached entry as (generation, provenance); None when it is not a generation (read as a miss)."""
    if not isinstance(entry, dict) or not all(name in entry for name in _REQUIRED_FIELDS):
        return None
    latency = entry["latency_s"]
    if not isinstance(entry["text"], str) or isinstance(latency, bool) or not isinstance(latency, (int, float)):
        return None  # not what we store: ask the model rather than report a wrong answer or latency
    measured = entry.get("measured")
    try:
        provenance = Measured(**measured) if isinstance(measured, dict) else UNKNOWN
    except TypeError:  # a record written by another version: its fields are not ours
        provenance = UNKNOWN
    fields = {name: entry[name] for name in _GENERATION_FIELDS if name in entry}
    if "notes" in fields:
        fields["notes"] = tuple(fields["notes"] or ())
    if "logprobs" in fields:  # stored as a JSON list; anything else is read as "none sent"
        lp = fields["logprobs"]
        ok = isinstance(lp, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lp)
        fields["logprobs"] = tuple(float(x) for x in lp) if ok else None
    return Generation(**fields), provenance


@dataclass(frozen=True)
class Peek:
    """A cell's messages and generation cache entry, made ahead of its turn on the event loop (entry None: not
    in the cache; the cache off: key and entry None)."""
    messages: list[dict]
    key: str | None
    entry: Any


def retrieve_and_peek(retrieve, generations: TimedGenerations | None, pipe, item) -> tuple[list, float, Any]:
    """On the retrieval thread: a cell's hits and, for a plain model's answer, its messages and cache entry (`peek`)."""
    hits, retrieve_s = retrieve(pipe, item)
    if generations is None or pipe.variant.prompt is None or not isinstance(pipe.model, ChatModel):
        return hits, retrieve_s, None  # retrieval only, or a routed variant's models
    return hits, retrieve_s, generations.peek(pipe.model, pipe.messages(item.question, hits))


class TimedGenerations:
    """Generation calls for one sweep: from the cache with their provenance, or timed now through the
    executor (bounded, rate limited, retried) and cached with this sweep's provenance."""

    def __init__(self, executor: Executor, cache: ResultCache, sweep_id: str, execution: ExecutionConfig):
        self.executor = executor
        self.cache = cache
        self.sweep_id = sweep_id
        self.execution = execution
        self.cache_hits = 0
        self.retimed = 0  # model calls made for a question whose answer the cache may hold
        self._in_flight: Counter[str] = Counter()  # calls waiting or running, per endpoint
        self._calls_out = 0  # all endpoints': an int other threads can read
        self._flights: dict[str, asyncio.Future] = {}  # cache key -> the answer being fetched for it
        self.merged = 0  # requests answered by an identical one already in flight (single flight)
        self._written: set[str] = set()  # keys this sweep stored: a peek from before may have missed them
        # set by the first answer, from the endpoint or the cache: work no call waits for (the scorers' and the
        # price table's imports) starts then, in the quiet while the first calls are out (`runner.loop_priority`)
        self.first_answer = asyncio.Event()

    def no_calls_out(self) -> bool:
        """No model call is waiting or running (read from any thread)."""
        return self._calls_out == 0

    def limit_for(self, model: ChatModel) -> int:
        """The executor's concurrency limit for this model's endpoint (`EndpointLimits.for_endpoint`)."""
        ex = self.execution
        return ex.local_concurrency if model.cfg.provider == "local" else ex.concurrency

    def peek(self, model: ChatModel, messages: list[dict]) -> Peek:
        """The request's cache entry, read now on any thread; `generate(peeked=)` uses it instead of reading on
        the event loop, where each SQLite read cost the loop ~1.5 ms (run.py: 1.17 s of a sweep's 11): taking the
        GIL back after the read waits for whichever thread holds it."""
        if not self.cache.enabled:
            return Peek(messages, None, None)
        key = generation_key(model.cfg, messages, model.extra_params)
        return Peek(messages, key, self.cache.get(key))

    async def generate(self, model: ChatModel, messages: list[dict], priority: int = 0, *,
                       retime: bool = False, peeked: Peek | None = None) -> tuple[Generation, bool, Measured]:
        """(generation, from_cache, where its latency was measured). `retime`: call the model even if
        the cache holds the answer (the new answer and its timing replace the cached ones). `peeked`: this
        request's entry read ahead (`peek`)."""
        known = peeked.key if peeked is not None else None
        key = known or generation_key(model.cfg, messages, model.extra_params)
        stored = key if self.cache.enabled else None  # --no-cache: neither read nor written
        if retime:
            return await self._generate(model, messages, priority, stored, retime, None)
        # Single flight: an identical request already on its way is waited for, not sent again (also with
        # --no-cache: it is this run's own call, not a cached answer); it is registered before the cache is
        # read, so no second caller slips between the read and the write.
        flight = self._flights.get(key)
        if flight is not None:
            gen, _, measured = await asyncio.shield(flight)
            self.merged += 1
            self.cache_hits += stored is not None
            return gen, True, measured
        self._flights[key] = flight = asyncio.get_running_loop().create_future()
        try:
            answer = await self._generate(model, messages, priority, stored, retime, peeked)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody was waiting
            raise
        else:
            flight.set_result(answer)
            return answer
        finally:
            del self._flights[key]

    async def _generate(self, model: ChatModel, messages: list[dict], priority: int, key: str | None,
                        retime: bool, peeked: Peek | None) -> tuple[Generation, bool, Measured]:
        if key is not None and not retime:
            # Read ahead on the retrieval thread when there was a peek (unless this sweep stored the key since:
            # then from memory or disk here); else on the loop, which beats a hop to a thread and back
            fresh = peeked is None or key in self._written
            hit = _from_entry(self.cache.get(key) if fresh else peeked.entry)
            if hit is not None:
                self.cache_hits += 1
                self.first_answer.set()
                return hit[0], True, hit[1]
        endpoint, limit = str(model.base_url), self.limit_for(model)
        self._in_flight[endpoint] += 1
        self._calls_out += 1
        try:
            gen = await self.executor.generate(model, messages, priority=priority)
            self.first_answer.set()
            # waiting calls hold no slot, so at most `limit` of those counted are at the endpoint
            measured = Measured(self.sweep_id, now_iso(), min(self._in_flight[endpoint], limit), limit)
        finally:
            self._in_flight[endpoint] -= 1
            self._calls_out -= 1
        if retime:
            self.retimed += 1
        if key is not None:
            self.cache.set_later(key, {**asdict(gen), "measured": asdict(measured)})  # stored by a writer thread
            self._written.add(key)
        return gen, False, measured
