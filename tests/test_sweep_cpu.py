"""The sweep's per-cell CPU on its event loop: cache writes queued to a writer thread, variant hashes computed
once per object, one TLS context for every model client (issue 12's speed goal). Fast: no model, no sweep."""

from __future__ import annotations

import ssl
import threading

import pytest

from workbench import spec as spec_module
from workbench.rag import deadline
from workbench.rag.cache import ResultCache
from workbench.spec import VariantConfig, content_hash


def test_set_later_is_read_back_at_once_and_stored_by_flush(tmp_path):
    cache = ResultCache(tmp_path / "c")
    release = threading.Event()
    stored = cache.set_many

    def slow_set_many(items):  # hold the writer so the entry is surely still queued when read
        release.wait(5)
        stored(items)

    cache.set_many = slow_set_many
    cache.set_later("k", {"text": "Denver Broncos", "latency_s": 0.2})
    assert cache.get("k") == {"text": "Denver Broncos", "latency_s": 0.2}  # from memory: not on disk yet
    assert cache.hits == 1
    other = ResultCache(tmp_path / "c")
    assert other.get("k") is None  # another reader does not see it yet
    release.set()
    cache.flush()
    assert other.get("k") == {"text": "Denver Broncos", "latency_s": 0.2}
    assert cache.get("k") == {"text": "Denver Broncos", "latency_s": 0.2} and cache._pending == {}
    other.close()
    cache.close()


def test_close_stores_every_queued_entry_in_order_of_the_last_value(tmp_path):
    cache = ResultCache(tmp_path / "c")
    for i in range(300):
        cache.set_later(f"k{i}", {"i": i})
    cache.set_later("k0", {"i": "newer"})  # a re-timed answer replaces the queued one
    cache.close()
    reopened = ResultCache(tmp_path / "c")
    assert reopened.get("k0") == {"i": "newer"}
    assert [reopened.get(f"k{i}") for i in range(1, 300)] == [{"i": i} for i in range(1, 300)]
    reopened.close()


def test_set_later_on_a_disabled_cache_stores_nothing(tmp_path):
    cache = ResultCache(tmp_path / "c", enabled=False)
    cache.set_later("k", {"x": 1})
    assert cache.get("k") is None and cache._writer is None
    cache.close()


def test_variant_hash_is_computed_once_per_object_and_a_copy_gets_its_own(monkeypatch):
    calls = []
    real = spec_module.content_hash
    monkeypatch.setattr(spec_module, "content_hash", lambda data: calls.append(1) or real(data))
    variant = VariantConfig()
    first = variant.hash
    assert first == content_hash(variant.model_dump(mode="json"))
    assert [variant.hash for _ in range(50)] == [first] * 50 and variant.short_hash == first[:12]
    assert len(calls) == 1
    changed = variant.model_copy(update={"retrieval": variant.retrieval.model_copy(update={"k": 7})})
    assert changed.hash == content_hash(changed.model_dump(mode="json")) != first  # never the original's
    assert VariantConfig().hash == first  # an equal config, another object: the same hash


def test_every_model_client_shares_one_tls_context(monkeypatch):
    made = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(1) or real(*a, **k))
    deadline._context_for.cache_clear()
    clients = [deadline.AsyncDeadlineClient(5.0), deadline.AsyncDeadlineClient(5.0), deadline.DeadlineClient(5.0)]
    assert len(made) == 1  # httpx would load the CA bundle once per client
    # the async clients' aiohttp transport keeps it as `ssl_context`, httpx's sync pool as `_ssl_context`
    contexts = {id(getattr(c._transport, "ssl_context", None) or c._transport._pool._ssl_context) for c in clients}
    assert len(contexts) == 1
    assert deadline._ssl_context().verify_mode == ssl.CERT_REQUIRED  # still verifying
    for c in clients[2:]:
        c.close()


def test_the_tls_context_is_made_on_a_thread_before_the_endpoint_check_needs_it(monkeypatch):
    """`prepare_tls` (called as a sweep starts) loads the CA bundle on a thread; the check's client then finds it."""
    import ssl
    import threading

    from workbench.rag import deadline

    threads = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: threads.append(threading.current_thread().name)
                        or real(*a, **k))
    deadline._context_for.cache_clear()
    deadline.prepare_tls()
    for t in threading.enumerate():
        if t.name == "workbench-tls":
            t.join(10)
    client = deadline.AsyncDeadlineClient(5.0)
    assert threads == ["workbench-tls"]  # made once, not on the caller's thread
    assert client._transport.ssl_context is deadline._ssl_context()


@pytest.mark.slow  # real Chroma and the MiniLM model: ~3 s of imports and loading
def test_a_dense_variants_questions_are_embedded_once_in_one_batch_before_its_searches(tmp_path):
    import asyncio
    import json

    from conftest import small_spec
    from workbench import events
    from workbench.data.corpus import load_corpus
    from workbench.rag.assemble import build_pipeline
    from workbench.runner.workspace import IndexQueue, Workspace
    from workbench.spec import load_spec

    docs = ["Denver won Super Bowl 50.", "The game was played at Levi's Stadium.", "Beyonce sang at halftime.",
            "Peyton Manning was the Broncos' quarterback.", "Carolina lost the game 24 to 10."]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                                              for i, t in enumerate(docs)), encoding="utf-8")
    raw = small_spec(tmp_path, chunking=[{"strategy": "none"}], retrieval=[{"kind": "dense", "k": 2}])
    raw["data"]["corpus"] = {"format": "jsonl", "path": str(tmp_path / "c.jsonl")}
    variant = load_spec(raw).variants()[0]
    ws = Workspace(home=tmp_path / "home", corpus=load_corpus(load_spec(raw).data.corpus), share_cpu=True)
    questions = ("Who won Super Bowl 50?", "Where was the game played?", "Who won Super Bowl 50?")
    embedded: list[list[str]] = []
    stop = events.subscribe(lambda e: e.name == "embed" and embedded.append(list(e.info["texts"])))
    try:
        async def go():
            queue = IndexQueue(ws)
            index = await queue.index_for(variant, questions)
            again = await queue.index_for(variant, questions)  # another variant on the same index: nothing more
            queue.close()
            return index, again

        index, again = asyncio.run(go())
        before = [list(t) for t in embedded]
        pipe = build_pipeline(variant, index, None)
        hits = [pipe.retrieve(q)[0] for q in questions]
    finally:
        stop()
    assert again is index
    assert sorted(map(sorted, before)) == sorted([sorted(docs), ["Where was the game played?", "Who won Super Bowl 50?"]])
    assert embedded == before  # the searches found every question's vector in the cache
    assert hits[0][0].chunk.doc_id == "d0"


def test_the_loop_gets_the_gil_within_a_millisecond_during_a_sweep_and_the_interval_comes_back():
    import sys

    from workbench.runner.loop_priority import responsive_loop

    before = sys.getswitchinterval()
    with responsive_loop():
        assert sys.getswitchinterval() <= 0.001 + 1e-9
        with responsive_loop():  # a second sweep at once
            assert sys.getswitchinterval() <= 0.001 + 1e-9
        assert sys.getswitchinterval() <= 0.001 + 1e-9  # the first is still running
    assert sys.getswitchinterval() == before
    try:
        with responsive_loop():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert sys.getswitchinterval() == before
