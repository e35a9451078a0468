"""Pipelining: BM25 questions are answered while dense indexes are still being built, variants finish
one after another, and BM25 alone never embeds the corpus."""

import asyncio
import time

import pytest

from conftest import small_spec
from workbench.rag.executor import PrioritySemaphore
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.rag.retrieval import chroma_client
from workbench.runner.sweep import run_sweep
from workbench.runner.workspace import Workspace


def test_priority_semaphore_admits_lower_numbers_first_and_survives_cancellation():
    async def scenario():
        sem = PrioritySemaphore(1)
        await sem.acquire()  # held
        order = []

        async def waiter(name, priority):
            await sem.acquire(priority)
            order.append(name)
            await asyncio.sleep(0)
            sem.release()

        tasks = [asyncio.create_task(waiter(n, p)) for n, p in [("c3", 3), ("a1", 1), ("b2", 2), ("a1-later", 1)]]
        doomed = asyncio.create_task(waiter("cancelled", 0))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
        sem.release()
        await asyncio.gather(*tasks)
        # the slot came back: a new acquire does not wait
        await asyncio.wait_for(sem.acquire(), timeout=1)
        return order

    assert asyncio.run(scenario()) == ["a1", "a1-later", "b2", "c3"]


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.1) as ep:
        yield ep


@pytest.mark.slow
def test_bm25_answers_start_before_the_dense_index_is_built_and_variants_finish_in_turn(tmp_path, endpoint, monkeypatch):
    spec = small_spec(
        tmp_path,
        retrieval=[{"kind": "dense", "k": 2}, {"kind": "bm25", "k": 2}],
        prompt=[{"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}],
        model=[{"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url, "max_tokens": 8}],
    )
    spec["data"]["eval"]["limit"] = 8
    spec["execution"] = {"concurrency": 4}
    calls_when_dense_ready = []
    original = Workspace.open_dense

    def open_dense(self, variant):  # observe only: how many model calls were made before it was ready
        index = original(self, variant)
        calls_when_dense_ready.append(endpoint.stats()["chat_calls"])
        return index

    monkeypatch.setattr(Workspace, "open_dense", open_dense)
    finished: list[tuple[float, str, str]] = []
    endpoint.reset_stats()
    results = run_sweep(spec, progress=False, on_cell=lambda r: finished.append((time.perf_counter(), r["variant_hash"], r["answer"])))

    assert len(results.rows) == 4 * 8 and all(r["error"] is None for r in results.rows)
    kinds = {v.hash: v.retrieval.kind for v in results.variants}
    assert kinds[finished[0][1]] == "bm25"
    assert calls_when_dense_ready[0] > 0  # BM25 questions went to the model while the dense index was built
    # variants finish one after another: each variant's last cell comes before the next one's last cell,
    # and most of a variant's cells come before any cell of the variant after it
    last = {}
    for t, h, _ in finished:
        last[h] = t
    order = sorted(last, key=last.get)
    assert [kinds[h] for h in order] == ["bm25", "bm25", "dense", "dense"]
    for earlier, later in zip(order, order[1:]):
        later_first = min(t for t, h, _ in finished if h == later)
        before = sum(1 for t, h, _ in finished if h == earlier and t <= later_first)
        assert before >= 8 - 4  # at most one round of `concurrency` calls overlaps
    # and the table is still in the spec's order, whatever the execution order was
    assert [r["variant_hash"] for r in results.rows[::8]] == [v.hash for v in results.variants]


@pytest.mark.slow
def test_bm25_alone_never_embeds_the_corpus(tmp_path):
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 3}])
    spec["stage"] = "retrieve"
    del spec["space"]["model"]
    results = run_sweep(spec, progress=False)
    assert results.stats["index_builds"] == 0 and results.stats["index_reused"] == 0
    assert results.to_frame()["hit_at_k"].notna().all()
    assert chroma_client(tmp_path / "home" / "chroma").list_collections() == []
