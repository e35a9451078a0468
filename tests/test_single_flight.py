"""Identical generation requests in flight at the same time are one model call (single flight on the
generation cache key, issue 20), with or without the cache; different ones and a re-timed one are not merged."""

from __future__ import annotations

import asyncio

import pytest

from workbench.rag.cache import ResultCache
from workbench.rag.chat import ChatModel
from workbench.rag.executor import Executor
from workbench.runner.generations import TimedGenerations
from workbench.spec import ExecutionConfig, ModelConfig
from workbench.testing.fake_endpoint import LatencyEndpoint

ASK = [{"role": "user", "content": "Who won Super Bowl 50?"}]
OTHER = [{"role": "user", "content": "Where was Super Bowl 50 played?"}]


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.2) as ep:
        yield ep


def run(endpoint, tmp_path, requests: list[tuple[list, bool]], cache: bool = True):
    execution = ExecutionConfig(concurrency=8)
    model = ChatModel(ModelConfig(provider="openai", model="m", base_url=endpoint.base_url, max_tokens=8))
    store = ResultCache(tmp_path / "gen", enabled=cache)
    gens = TimedGenerations(Executor(execution), store, "sweep-1", execution)

    async def go():
        try:
            return await asyncio.gather(*(gens.generate(model, m, retime=r) for m, r in requests))
        finally:
            await model.aclose()

    endpoint.reset_stats()
    try:
        answers = asyncio.run(go())
    finally:
        store.close()
    return answers, gens, endpoint.stats()["chat_calls"]


def test_identical_requests_in_flight_are_one_call(endpoint, tmp_path):
    answers, gens, calls = run(endpoint, tmp_path, [(ASK, False)] * 5 + [(OTHER, False)])
    assert calls == 2 and gens.merged == 4  # five identical + one other: two calls
    assert len({gen.text for gen, _, _ in answers[:5]}) == 1  # the one answer, shared
    assert [cached for _, cached, _ in answers] == [False, True, True, True, True, False]  # merged ones are no calls
    assert {m.sweep_id for _, _, m in answers} == {"sweep-1"}  # measured in this sweep, by the one call


def test_a_retimed_request_is_never_merged(endpoint, tmp_path):
    _, gens, calls = run(endpoint, tmp_path, [(ASK, False), (ASK, True), (ASK, True)])
    assert calls == 3 and gens.merged == 0  # a re-timed question wants a timing of its own


def test_without_the_cache_identical_requests_still_share_a_call_and_nothing_is_stored(endpoint, tmp_path):
    answers, gens, calls = run(endpoint, tmp_path, [(ASK, False)] * 3 + [(OTHER, False)], cache=False)
    assert calls == 2 and gens.merged == 2 and gens.cache_hits == 0  # this run's own call, shared; no cache read
    assert len({gen.text for gen, _, _ in answers[:3]}) == 1
    _, gens, calls = run(endpoint, tmp_path, [(ASK, False)], cache=False)
    assert calls == 1 and gens.merged == 0  # asked again: --no-cache stored nothing


def test_a_peeked_entry_is_used_and_a_stale_peek_is_read_again(endpoint, tmp_path):
    """The sweep reads a cell's cache entry on the retrieval thread (`peek`); the loop then reads nothing, unless
    this sweep stored that key since (then the stored answer, not a second call)."""
    execution = ExecutionConfig(concurrency=8)
    model = ChatModel(ModelConfig(provider="openai", model="m", base_url=endpoint.base_url, max_tokens=8))
    store = ResultCache(tmp_path / "gen")
    first_sweep = TimedGenerations(Executor(execution), store, "sweep-1", execution)
    later_sweep = TimedGenerations(Executor(execution), store, "sweep-2", execution)

    def reads() -> int:
        return store.hits + store.misses

    async def go():
        try:
            stale = await asyncio.to_thread(first_sweep.peek, model, ASK)  # before anything was stored: a miss
            first = await first_sweep.generate(model, ASK, peeked=stale)  # the call
            before = reads()
            again = await first_sweep.generate(model, ASK, peeked=stale)  # stored since the peek: read, not called
            assert reads() == before + 1
            ahead = await asyncio.to_thread(later_sweep.peek, model, ASK)  # a later sweep's read ahead: a hit
            before = reads()
            later = await later_sweep.generate(model, ASK, peeked=ahead)
            assert reads() == before  # the loop read nothing
            return stale, ahead, [first, again, later]
        finally:
            await model.aclose()

    endpoint.reset_stats()
    try:
        stale, ahead, answers = asyncio.run(go())
    finally:
        store.close()
    assert stale.entry is None and ahead.entry is not None and stale.key == ahead.key
    assert endpoint.stats()["chat_calls"] == 1
    assert [cached for _, cached, _ in answers] == [False, True, True]
    assert len({gen.text for gen, _, _ in answers}) == 1
