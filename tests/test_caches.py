"""The disk caches on real files: ResultCache (generations, embeddings) and what their keys depend on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from workbench.rag.cache import ResultCache, generation_key
from workbench.rag.embeddings import make_embedder
from workbench.spec import EmbeddingConfig, ModelConfig

MESSAGES = [{"role": "user", "content": "Who won Super Bowl 50?"}]


def test_a_miss_then_a_hit_counted(tmp_path):
    cache = ResultCache(tmp_path / "c")
    assert cache.get("k") is None
    cache.set("k", {"text": "Denver Broncos", "tokens": 3})
    assert cache.get("k") == {"text": "Denver Broncos", "tokens": 3}
    assert (cache.hits, cache.misses) == (1, 1)
    cache.close()


def test_entries_survive_reopening_the_directory(tmp_path):
    first = ResultCache(tmp_path / "c")
    first.set_many({"a": 1, "b": [2, 3]})
    first.close()
    again = ResultCache(tmp_path / "c")  # the next run of the same sweep
    assert (again.get("a"), again.get("b"), again.get("c")) == (1, [2, 3], None)
    assert (again.hits, again.misses) == (2, 1)
    again.close()


def test_disabled_is_a_pass_through_that_writes_nothing(tmp_path):
    cache = ResultCache(tmp_path / "c", enabled=False)
    cache.set("k", "v")
    cache.set_many({"x": 1})
    assert cache.get("k") is None and cache.get("x") is None
    assert (cache.hits, cache.misses) == (0, 0)
    cache.close()
    assert not (tmp_path / "c").exists()


WRITER = """
import sys
from workbench.rag.cache import ResultCache
cache = ResultCache(sys.argv[1])
for i in range(300):
    cache.set(f"{sys.argv[2]}-{i}", i)
cache.close()
"""


def test_two_processes_write_the_same_directory_at_once(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "c"), name], stderr=subprocess.PIPE)
               for name in ("p1", "p2")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode(errors="replace")
    cache = ResultCache(tmp_path / "c")
    assert all(cache.get(f"{name}-{i}") == i for name in ("p1", "p2") for i in range(300))
    cache.close()


def test_generation_key_follows_what_changes_the_answer():
    base = ModelConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    key = generation_key(base, MESSAGES)
    assert generation_key(base.model_copy(), MESSAGES) == key
    assert generation_key(base.model_copy(update={"temperature": 0.7}), MESSAGES) != key
    assert generation_key(base.model_copy(update={"base_url": "http://127.0.0.1:10/v1"}), MESSAGES) != key
    assert generation_key(base, [{"role": "user", "content": "Who lost Super Bowl 50?"}]) != key
    # prices and the name of the key's env var change neither the request nor the answer
    assert generation_key(base.model_copy(update={"price_input_per_mtok": 3.0, "api_key_env": "X"}), MESSAGES) == key


def test_embedding_cache_is_keyed_by_vector_config_and_text(tmp_path):
    texts = ["Super Bowl 50 was played in Santa Clara.", "The Broncos won."]
    first = make_embedder(EmbeddingConfig(), cache_dir=tmp_path / "emb")
    vectors = first.embed(texts)
    assert (first.calls, first.misses, first.hits) == (1, 2, 0)
    first.close()
    # batch_size changes how, not what, is embedded: the same entries serve it
    again = make_embedder(EmbeddingConfig(batch_size=8), cache_dir=tmp_path / "emb")
    np.testing.assert_array_equal(again.embed(texts[::-1]), vectors[::-1])
    assert (again.calls, again.misses, again.hits) == (0, 0, 2)
    # one new text: only it reaches the model
    again.embed([texts[0], "A new sentence."])
    assert (again.calls, again.misses, again.hits) == (1, 1, 3)
    again.close()
