"""The sweep's per-cell CPU on its event loop: cache writes queued to a writer thread, variant hashes computed
once per object, one TLS context for every model client (issue 12's speed goal). Fast: no model, no sweep."""

from __future__ import annotations

import ssl
import threading

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
    contexts = {id(c._transport._pool._ssl_context) for c in clients}
    assert len(contexts) == 1
    assert deadline._ssl_context().verify_mode == ssl.CERT_REQUIRED  # still verifying
    for c in clients[2:]:
        c.close()
