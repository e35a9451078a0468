"""Retrieval: RRF by hand, Chroma index build/reuse in tmp_path, dense/BM25/hybrid on a real SQuAD article."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.rag.chunking import Chunk
from workbench.spec import ChunkingConfig, EmbeddingConfig, RetrievalConfig
from workbench.rag.embeddings import LocalMiniLM
from workbench.errors import DataError
from workbench.rag.retrieval import ChunkIndex, Hit, chroma_client, index_key, rrf

SQUAD = Path(__file__).resolve().parents[1] / "experiments" / "data" / "squad-super-bowl-50" / "dev-v1.1-super-bowl-50.json"
N_QUESTIONS = 30


# ---------------------------------------------------------------- RRF, by hand


def test_rrf_hand_computed():
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]], k=10, rrf_k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "b": 1 / 62,
        "d": 1 / 63,
    }
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item], abs=1e-15)


def test_rrf_small_constant_and_top_k():
    # rrf_k=1: a = 1/2 + 1/4 = 0.75, b = 1/3 + 1/2 = 0.8333, c = 1/4 + 1/3 = 0.5833
    fused = rrf([["a", "b", "c"], ["b", "c", "a"]], k=2, rrf_k=1)
    assert fused == [("b", pytest.approx(1 / 3 + 1 / 2)), ("a", pytest.approx(1 / 2 + 1 / 4))]


def test_rrf_ties_are_broken_deterministically():
    # x and y both get 1/61 + 1/62 exactly
    rankings = [["x", "y"], ["y", "x"]]
    assert [i for i, _ in rrf(rankings, k=2, rrf_k=60)] == ["x", "y"]  # first seen
    assert [i for i, _ in rrf(rankings, k=2, rrf_k=60, order={"y": 0, "x": 1})] == ["y", "x"]  # chunk order
    a, b = rrf(rankings, k=2, rrf_k=60)
    assert a[1] == b[1]


def test_rrf_empty_and_single_ranking():
    assert rrf([], k=3, rrf_k=60) == []
    assert rrf([[], []], k=3, rrf_k=60) == []
    assert [i for i, _ in rrf([["p", "q"]], k=5, rrf_k=10)] == ["p", "q"]


# ---------------------------------------------------------------- index keys and clients


def test_index_key_is_a_valid_stable_chroma_name():
    key = index_key("d" * 64, ChunkingConfig(), EmbeddingConfig())
    assert key.startswith("wb-") and len(key) == 27 and 3 <= len(key) <= 63
    assert key == index_key("d" * 64, ChunkingConfig(), EmbeddingConfig())
    assert key != index_key("e" * 64, ChunkingConfig(), EmbeddingConfig())
    assert key != index_key("d" * 64, ChunkingConfig(size=300), EmbeddingConfig())
    assert key != index_key("d" * 64, ChunkingConfig(), EmbeddingConfig(provider="openai", model="x"))


# ---------------------------------------------------------------- fixtures


class Counting:
    """Wraps an embedder and counts calls and texts."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.calls = 0
        self.texts = 0

    def embed(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM()


@pytest.fixture(scope="module")
def squad():
    article = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]
    title = article["title"]
    chunks = [
        Chunk(id=f"{title}/{i}#0", doc_id=f"{title}/{i}", text=p["context"], start=0, end=len(p["context"]))
        for i, p in enumerate(article["paragraphs"])
    ]
    # The first question of each of the first N paragraphs (the first 30 questions would all hit 6 paragraphs)
    questions = [(p["qas"][0]["question"], f"{title}/{i}#0") for i, p in enumerate(article["paragraphs"][:N_QUESTIONS])]
    return chunks, questions


@pytest.fixture(scope="module")
def squad_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chroma")


@pytest.fixture(scope="module")
def squad_index(squad, minilm, squad_path):
    chunks, _ = squad
    return ChunkIndex("wb-squad-test", chunks, Counting(minilm), chroma_client(squad_path))


def tiny_chunks() -> list[Chunk]:
    texts = [
        "The Denver Broncos won Super Bowl 50.",
        "Levi's Stadium is in Santa Clara, California.",
        "Beyoncé and Bruno Mars performed at the halftime show.",
        "Peyton Manning was the Broncos quarterback.",
        "Cam Newton was named the league MVP.",
    ]
    return [Chunk(id=f"t/{i}#0", doc_id=f"t/{i}", text=t, start=0, end=len(t)) for i, t in enumerate(texts)]


# ---------------------------------------------------------------- quality on a real article


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_gold_paragraph_in_top4_for_most_questions(squad, squad_index, kind):
    _, questions = squad
    results = squad_index.search([q for q, _ in questions], RetrievalConfig(kind=kind, k=4))
    assert len(results) == len(questions)
    hit_rate = np.mean([gold in [h.chunk.id for h in hits] for hits, (_, gold) in zip(results, questions)])
    top1 = np.mean([hits[0].chunk.id == gold for hits, (_, gold) in zip(results, questions)])
    print(f"\n{kind}: hit@4 = {hit_rate:.3f}, hit@1 = {top1:.3f} over {len(questions)} questions")
    assert hit_rate > 0.6
    for hits in results:
        assert len(hits) == 4
        assert [h.rank for h in hits] == [1, 2, 3, 4]
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert len({h.chunk.id for h in hits}) == 4
        assert all(isinstance(h, Hit) for h in hits)


def test_dense_scores_are_cosine_similarities(squad, squad_index, minilm):
    chunks, questions = squad
    question = questions[0][0]
    (hits,) = squad_index.search([question], RetrievalConfig(kind="dense", k=3))
    q = minilm.embed([question])[0]
    for hit in hits:
        expected = float(q @ minilm.embed([hit.chunk.text])[0])
        assert hit.score == pytest.approx(expected, abs=1e-4)


def test_hybrid_scores_are_rrf_of_both_rankings(squad, squad_index):
    _, questions = squad
    cfg = RetrievalConfig(kind="hybrid", k=5, candidates=20, rrf_k=60)
    query = questions[3][0]
    (hybrid,) = squad_index.search([query], cfg)
    (dense,) = squad_index.search([query], RetrievalConfig(kind="dense", k=20))
    (sparse,) = squad_index.search([query], RetrievalConfig(kind="bm25", k=20))
    chunk_order = {c.id: i for i, c in enumerate(squad[0])}  # ties go to the earlier chunk
    expected = rrf([[h.chunk.id for h in dense], [h.chunk.id for h in sparse]], k=5, rrf_k=60, order=chunk_order)
    assert [(h.chunk.id, h.score) for h in hybrid] == [(i, pytest.approx(s)) for i, s in expected]


# ---------------------------------------------------------------- build and reuse


def test_index_reused_across_clients_without_embedding(squad, squad_index, squad_path, minilm):
    chunks, questions = squad
    built = squad_index  # built once for the module, embedding every chunk
    assert built.built is True and built.embedder.texts >= len(chunks)
    assert built.collection.count() == len(chunks)

    second = Counting(minilm)
    reused = ChunkIndex("wb-squad-test", chunks, second, chroma_client(squad_path))  # a new client, same path
    assert reused.built is False
    assert second.calls == 0
    # …and it answers the same
    cfg = RetrievalConfig(kind="dense", k=4)
    query = [questions[0][0]]
    assert [h.chunk.id for h in reused.search(query, cfg)[0]] == [h.chunk.id for h in built.search(query, cfg)[0]]

    # …and from another process (the embedder there refuses to run)
    script = f"""
import sys
from workbench.rag.chunking import Chunk
from workbench.rag.retrieval import ChunkIndex, chroma_client
class Refuse:
    name, dim = "all-MiniLM-L6-v2-int8", 384
    def embed(self, texts):
        sys.exit("embedder called")
chunks = [Chunk(**c) for c in {[c.__dict__ for c in chunks]!r}]
index = ChunkIndex("wb-squad-test", chunks, Refuse(), chroma_client({str(squad_path)!r}))
print("built" if index.built else "reused", index.collection.count())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["reused", str(len(chunks))]

    stored = reused.collection.get(ids=[chunks[7].id], include=["documents", "metadatas"])
    assert stored["documents"] == [chunks[7].text]
    assert stored["metadatas"] == [{"doc_id": chunks[7].doc_id, "start": 0, "end": len(chunks[7].text)}]


def test_changed_chunk_list_rebuilds(squad, minilm, tmp_path):
    chunks, _ = squad
    client = chroma_client(tmp_path / "chroma")
    ChunkIndex("wb-change", chunks[:10], Counting(minilm), client)
    edited = list(chunks[:10])
    edited[4] = Chunk(id=edited[4].id, doc_id=edited[4].doc_id, text=edited[4].text + " Edited.", start=0,
                      end=len(edited[4].text) + 8)
    counter = Counting(minilm)
    rebuilt = ChunkIndex("wb-change", edited, counter, client)  # same count, different content
    assert rebuilt.built is True and counter.texts == 10
    assert rebuilt.collection.get(ids=[edited[4].id])["documents"] == [edited[4].text]

    fewer = Counting(minilm)
    shrunk = ChunkIndex("wb-change", edited[:6], fewer, chroma_client(tmp_path / "chroma"))
    assert shrunk.built is True and fewer.texts == 6 and shrunk.collection.count() == 6


def test_half_built_collection_is_rebuilt(minilm, tmp_path):
    chunks = tiny_chunks()
    client = chroma_client(tmp_path / "chroma")
    index = ChunkIndex("wb-half", chunks, Counting(minilm), client)
    meta = dict(index.collection.metadata)
    index.collection.modify(metadata={**meta, "wb_complete": False})  # as if interrupted before the last add
    counter = Counting(minilm)
    assert ChunkIndex("wb-half", chunks, counter, client).built is True and counter.calls == 1


def test_duplicate_chunk_ids_are_rejected(minilm, tmp_path):
    chunks = tiny_chunks()
    with pytest.raises(DataError, match="t/0#0"):
        ChunkIndex("wb-dupes", chunks + [chunks[0]], Counting(minilm), chroma_client(tmp_path / "chroma"))


# ---------------------------------------------------------------- edge cases


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_k_larger_than_the_corpus_is_capped(minilm, kind):
    chunks = tiny_chunks()
    index = ChunkIndex("wb-tiny", chunks, minilm, chroma_client())
    (hits,) = index.search(["Broncos quarterback Super Bowl California"], RetrievalConfig(kind=kind, k=50))
    assert 1 <= len(hits) <= len(chunks)
    if kind != "bm25":  # dense and hybrid rank every chunk
        assert len(hits) == len(chunks)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_returns_only_matching_chunks_best_first(minilm):
    index = ChunkIndex("wb-tiny", tiny_chunks(), minilm, chroma_client())
    (hits,) = index.search(["Who was the Broncos quarterback?"], RetrievalConfig(kind="bm25", k=5))
    # "broncos" occurs in chunks 0 and 3, "quarterback" only in 3
    assert [h.chunk.id for h in hits] == ["t/3#0", "t/0#0"]
    assert hits[0].score > hits[1].score > 0


def test_stopword_only_and_unknown_queries_return_no_bm25_hits(minilm):
    index = ChunkIndex("wb-tiny", tiny_chunks(), minilm, chroma_client())
    stop, unknown, real = index.search(
        ["the of and is it", "zyxwvut qqqq", "halftime show"], RetrievalConfig(kind="bm25", k=3)
    )
    assert stop == [] and unknown == []
    assert real[0].chunk.id == "t/2#0"
    # hybrid falls back to the dense ranking alone
    (hybrid,) = index.search(["the of and is it"], RetrievalConfig(kind="hybrid", k=3))
    (dense,) = index.search(["the of and is it"], RetrievalConfig(kind="dense", k=3))
    assert [h.chunk.id for h in hybrid] == [h.chunk.id for h in dense]


def test_batched_search_equals_one_by_one(squad, squad_index):
    _, questions = squad
    queries = [q for q, _ in questions[:6]]
    for kind in ("dense", "bm25", "hybrid"):
        cfg = RetrievalConfig(kind=kind, k=4)
        batched = squad_index.search(queries, cfg)
        single = [squad_index.search([q], cfg)[0] for q in queries]
        assert [[h.chunk.id for h in hits] for hits in batched] == [[h.chunk.id for h in hits] for hits in single]


def test_empty_query_list_and_empty_index(minilm):
    index = ChunkIndex("wb-tiny", tiny_chunks(), minilm, chroma_client())
    assert index.search([], RetrievalConfig()) == []
    empty = ChunkIndex("wb-empty", [], minilm, chroma_client())
    for kind in ("dense", "bm25", "hybrid"):
        assert empty.search(["anything"], RetrievalConfig(kind=kind)) == [[]]
