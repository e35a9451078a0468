"""Chunking the real SQuAD article: exact offsets, overlap, token budgets, whole-document chunks."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from workbench.rag import chunking
from workbench.rag.chunking import STRATEGIES, Chunk, chunk_corpus, chunk_text, count_tokens, locate
from workbench.spec import ChunkingConfig, CorpusSource
from workbench.data.corpus import Corpus, Document, corpus_digest, load_corpus

SQUAD = Path(__file__).resolve().parents[1] / "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return load_corpus(CorpusSource(format="squad", path=str(SQUAD)))


def neighbours(chunks: list[Chunk]) -> list[tuple[Chunk, Chunk]]:
    return [(a, b) for a, b in zip(chunks, chunks[1:]) if a.doc_id == b.doc_id]


CONFIGS = [
    ChunkingConfig(strategy="recursive", size=200, overlap=50),
    ChunkingConfig(strategy="recursive", size=500, overlap=0),
    ChunkingConfig(strategy="token", size=32, overlap=8),
    ChunkingConfig(strategy="token", size=128, overlap=16),
    ChunkingConfig(strategy="none"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.strategy}{c.size}/{c.overlap}")
def test_every_chunk_is_the_exact_slice_of_its_document(corpus, cfg):
    chunks = chunk_corpus(corpus, cfg)
    assert chunks, "no chunks"
    for c in chunks:
        assert corpus.get(c.doc_id).text[c.start : c.end] == c.text
        assert c.text.strip()
    # ids are doc_id#index, numbered from 0 in order within each document; documents keep corpus order
    per_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        per_doc.setdefault(c.doc_id, []).append(c)
    assert list(per_doc) == [d.id for d in corpus.documents]
    for doc_id, doc_chunks in per_doc.items():
        assert [c.id for c in doc_chunks] == [f"{doc_id}#{i}" for i in range(len(doc_chunks))]
        assert [c.start for c in doc_chunks] == sorted({c.start for c in doc_chunks})  # strictly increasing


def test_recursive_chunks_respect_the_size_and_overlap_their_neighbours(corpus):
    cfg = ChunkingConfig(strategy="recursive", size=200, overlap=50)
    chunks = chunk_corpus(corpus, cfg)
    assert len(chunks) > 2 * len(corpus)
    assert max(len(c.text) for c in chunks) <= 200
    pairs = neighbours(chunks)
    assert pairs
    for a, b in pairs:
        assert a.start < b.start < a.end <= b.end, (a, b)  # b begins inside a: shared text
        assert a.end - b.start <= 50
        shared = a.text[b.start - a.start :]
        assert b.text.startswith(shared) and shared.strip()


def test_recursive_without_overlap_has_disjoint_neighbours(corpus):
    chunks = chunk_corpus(corpus, ChunkingConfig(strategy="recursive", size=300, overlap=0))
    pairs = neighbours(chunks)
    assert pairs
    assert all(a.end <= b.start for a, b in pairs)
    # together the chunks cover every non-space character of the document
    for doc in corpus.documents:
        covered = "".join(c.text for c in chunks if c.doc_id == doc.id)
        assert "".join(covered.split()) == "".join(doc.text.split())


def test_recursive_prefers_paragraph_and_word_boundaries():
    text = "First paragraph here.\n\nSecond paragraph is longer than that."
    chunks = chunk_text("d", text, ChunkingConfig(strategy="recursive", size=40, overlap=0))
    assert [c.text for c in chunks] == ["First paragraph here.", "Second paragraph is longer than that."]
    assert (chunks[1].start, chunks[1].end) == (23, len(text))
    words = chunk_text("d", "alpha beta gamma delta", ChunkingConfig(strategy="recursive", size=12, overlap=0))
    assert [c.text for c in words] == ["alpha beta", "gamma delta"]


@pytest.mark.parametrize("size,overlap", [(32, 8), (64, 16), (128, 0)])
def test_token_chunks_fit_the_token_budget_and_overlap(corpus, size, overlap):
    chunks = chunk_corpus(corpus, ChunkingConfig(strategy="token", size=size, overlap=overlap))
    counts = [count_tokens(c.text) for c in chunks]
    assert max(counts) <= size
    assert max(counts) > size * 0.75  # chunks are filled, not trivially small
    pairs = neighbours(chunks)
    assert pairs
    if overlap:
        assert all(b.start < a.end for a, b in pairs)
    else:
        assert all(a.end <= b.start for a, b in pairs)


def test_token_count_uses_minilm_wordpiece_without_special_tokens_or_truncation(corpus):
    assert count_tokens("Super Bowl 50") == 3
    assert count_tokens("") == 0
    assert count_tokens("unaffable") > 1  # WordPiece splits unknown words into pieces
    longest = max(corpus.documents, key=lambda d: len(d.text))
    assert count_tokens(longest.text) > 300  # the tokenizer file's 128/512 truncation is off
    tok = chunking.minilm_tokenizer()
    assert tok.truncation is None and tok.padding is None
    assert count_tokens(longest.text) == len(tok.encode(longest.text).ids) - 2  # [CLS] and [SEP] not counted


def test_none_strategy_gives_one_chunk_per_document(corpus):
    chunks = chunk_corpus(corpus, ChunkingConfig(strategy="none"))
    assert len(chunks) == len(corpus) == 54
    for c, doc in zip(chunks, corpus.documents, strict=True):
        assert (c.id, c.doc_id, c.text, c.start, c.end) == (f"{doc.id}#0", doc.id, doc.text, 0, len(doc.text))


def test_whitespace_documents_and_pieces_give_no_chunks():
    for strategy in STRATEGIES:
        assert chunk_text("blank", " \n\n\t ", ChunkingConfig(strategy=strategy, size=10, overlap=0)) == []
    docs = (Document("a", "Some text.\n\n   \n\nMore text."), Document("b", "   "))
    corpus = Corpus(docs, corpus_digest(docs), "test")
    chunks = chunk_corpus(corpus, ChunkingConfig(strategy="recursive", size=12, overlap=0))
    assert [(c.id, c.text) for c in chunks] == [("a#0", "Some text."), ("a#1", "More text.")]


def test_repeated_passages_map_to_successive_occurrences():
    text = "abc abc abc abc"
    chunks = chunk_text("r", text, ChunkingConfig(strategy="recursive", size=4, overlap=0))
    assert [(c.start, c.end) for c in chunks] == [(0, 3), (4, 7), (8, 11), (12, 15)]
    assert locate("xx xx", ["xx", "xx"]) == [(0, 2), (3, 5)]


def test_chunking_is_deterministic(corpus):
    cfg = ChunkingConfig(strategy="token", size=64, overlap=16)
    first = chunk_corpus(corpus, cfg)
    chunking._recursive_splitter.cache_clear()
    chunking.count_tokens.cache_clear()
    assert chunk_corpus(corpus, cfg) == first
    assert chunk_corpus(corpus, ChunkingConfig(strategy="token", size=64, overlap=0)) != first


def test_registry_covers_exactly_the_configurable_strategies():
    allowed = set(typing.get_args(ChunkingConfig.model_fields["strategy"].annotation))
    assert set(STRATEGIES) == allowed == {"recursive", "token", "none"}
