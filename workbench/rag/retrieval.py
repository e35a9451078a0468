"""Retrieval over chunks: Chroma (dense, cosine), bm25s (sparse) and reciprocal-rank fusion of both.

    from workbench.spec import ChunkingConfig, EmbeddingConfig, RetrievalConfig
    client = chroma_client(".workbench/chroma")
    key = index_key(corpus.digest, ChunkingConfig(), EmbeddingConfig())
    index = ChunkIndex(key, chunks, make_embedder(EmbeddingConfig()), client)
    [[(h.rank, h.chunk.id, round(h.score, 3)) for h in hits]
     for hits in index.search(["Who won Super Bowl 50?"], RetrievalConfig(kind="hybrid", k=3))]

One Chroma collection per (corpus digest, chunking, embedding) holds the chunk vectors; a complete
collection for the same chunk list is reused without embedding anything. BM25 is built in memory on
first use. Retrievers are registered by the name the YAML uses (`RETRIEVERS`).
"""

from __future__ import annotations

import logging

import math
import os
import struct
import time
from collections import Counter
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from workbench.rag.lean_imports import import_bm25s, import_chromadb
from workbench.rag.chunking import Chunk
from workbench.spec import ChunkingConfig, EmbeddingConfig, RetrievalConfig, content_hash
from workbench.rag.embeddings import Embedder
from workbench.errors import ConfigError, DataError
from workbench.events import span

log = logging.getLogger(__name__)

ADD_BATCH = 5000  # chunks embedded per step; Chroma's max batch here is 5,461 (client.get_max_batch_size())
# Chroma's add holds the GIL for its whole call (~0.5 ms per vector, more as the collection grows): small
# writes keep a sweep's event loop, which answers other variants' questions meanwhile, responsive.
WRITE_BATCH = 128

# BM25 as Anserini/Pyserini run it for the BEIR baselines (Lucene's BM25 variant, k1=0.9, b=0.4), with
# English stop words removed and the Snowball (PyStemmer) English stemmer: bm25s reports that this
# setting reproduces the BEIR/Anserini figures.
BM25_METHOD = "lucene"
BM25_K1 = 0.9
BM25_B = 0.4


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # dense: cosine similarity; bm25: BM25 score; hybrid: RRF score
    rank: int  # 1-based


# ---------------------------------------------------------------- pure helpers


def rrf(
    rankings: Sequence[Sequence[str]],
    k: int,
    rrf_k: int = 60,
    order: Mapping[str, int] | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal-rank fusion: score(id) = Σ over rankings of 1 / (rrf_k + rank), rank 1-based.

    Returns the top `k` (id, score) pairs, best first. Ties go to the smaller `order[id]` when given
    (the index passes chunk order), else to the id seen first (rankings read in order).

        rrf([["a", "b"], ["b", "c"]], k=2, rrf_k=60)
        # [('b', 1/62 + 1/61), ('a', 1/61)]
    """
    contributions: dict[str, list[float]] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            contributions.setdefault(item, []).append(1.0 / (rrf_k + rank))
    seen = {item: i for i, item in enumerate(contributions)}
    tie = order if order is not None else seen
    # fsum is exactly rounded, so equal sets of contributions give bit-identical scores whatever their order.
    scored = [(item, math.fsum(parts)) for item, parts in contributions.items()]
    scored.sort(key=lambda pair: (-pair[1], tie.get(pair[0], len(tie) + seen[pair[0]])))
    return scored[:k]


def index_key(corpus_digest: str, chunking: ChunkingConfig, embedding: EmbeddingConfig) -> str:
    """The Chroma collection name for one (corpus, chunking, embedding): "wb-" + 24 hex of a content hash."""
    digest = content_hash(
        {
            "corpus": corpus_digest,
            "chunking": chunking.model_dump(mode="json"),
            "embedding": embedding.vector_key,
        }
    )
    return f"wb-{digest[:24]}"


def chunks_hash(chunks: Sequence[Chunk]) -> str:
    return content_hash([[c.id, c.doc_id, c.text, c.start, c.end] for c in chunks])


def chroma_client(path: str | Path | None = None, host: str | None = None):  # -> chromadb.ClientAPI
    """An embedded PersistentClient at `path`, an HttpClient when `host` is given ("host", "host:port"
    or "http(s)://host:port"), or an in-memory client when neither is. Telemetry is off."""
    chromadb = import_chromadb()  # first: chromadb.config would import the package the slow way
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host:
        parsed = urlparse(host if "://" in host else f"http://{host}")
        if not parsed.hostname:
            raise ConfigError(f"Chroma host {host!r} is not a host name or URL (e.g. localhost:8000)")
        ssl = parsed.scheme == "https"
        port = parsed.port or (443 if ssl else 8000)
        return chromadb.HttpClient(host=parsed.hostname, port=port, ssl=ssl, settings=settings)
    if path is None:
        return chromadb.EphemeralClient(settings=settings)
    Path(path).mkdir(parents=True, exist_ok=True)
    if damaged := damaged_hnsw_files(Path(path)):  # hnswlib would read past their end and corrupt memory
        _move_aside(Path(path), f"{damaged[0]} is cut short")
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as exc:  # chromadb raises InternalError, sqlite errors, panics from its Rust core
        _move_aside(Path(path), f"{exc}, e.g. a truncated {Path(path) / 'chroma.sqlite3'}")
        # chromadb keeps the system that failed to start under the folder's path and would hand it back:
        # forget it (there is no public call for one path; clear_system_cache() would break other clients).
        from chromadb.api.shared_system_client import SharedSystemClient

        getattr(SharedSystemClient, "_identifier_to_system", {}).pop(str(path), None)
        return chromadb.PersistentClient(path=str(path), settings=settings)


def _move_aside(path: Path, why: str) -> None:
    """The Chroma folder only holds indexes built from the corpus (a cache): move it aside, start afresh."""
    moved = Path(f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        path.rename(moved)
    except FileNotFoundError:  # another process moved it first
        pass
    except OSError as exc:
        raise DataError(f"{path}: the Chroma index folder is damaged ({why}) and cannot be moved aside "
                        f"({exc.strerror}); delete it — its indexes are rebuilt from the corpus") from None
    log.warning("%s: the Chroma index folder is damaged (%s): moved aside to %s; its indexes are rebuilt from the "
                "corpus (the embedding cache makes that quick)", path, why, moved)
    path.mkdir(parents=True, exist_ok=True)


_HNSW_HEADER = 100  # bytes of hnswlib's header.bin (format version 1), as Chroma 1.x writes it


def damaged_hnsw_files(path: Path) -> list[str]:
    """Chroma's HNSW segment files that are shorter than their own header says (a truncated copy, a full
    disk). Chroma's hnswlib reads them without checking: searches silently found nothing, or the process
    crashed with a double free. A header of another format version is not judged."""
    damaged = []
    for header in path.glob("*/header.bin"):
        data = header.read_bytes()
        if len(data) < 4:
            damaged.append(str(header))
            continue
        if struct.unpack_from("<i", data)[0] != 1:
            continue
        if len(data) != _HNSW_HEADER:
            damaged.append(str(header))
            continue
        count, per_element = struct.unpack_from("<QQ", data, 20)  # cur_element_count, size_data_per_element
        level0, lengths = header.with_name("data_level0.bin"), header.with_name("length.bin")
        if level0.exists() and level0.stat().st_size < count * per_element:
            damaged.append(str(level0))
        elif lengths.exists() and lengths.stat().st_size < 4 * count:
            damaged.append(str(lengths))
    return damaged


# ---------------------------------------------------------------- the index


class ChunkIndex:
    """Dense (Chroma), BM25 and hybrid search over one chunk list.

    `built` is True when this index created the Chroma collection (embedding every chunk), False when an
    existing complete collection for the same chunk list was reused (no embedder call). With
    `dense=False` the collection is opened (or built) only on the first dense search or
    `ensure_dense()`, so BM25 alone never embeds the corpus.
    """

    def __init__(self, key: str, chunks: Sequence[Chunk], embedder: Embedder, client: Any, dense: bool = True) -> None:
        self.key = key
        self.chunks = list(chunks)
        self.embedder = embedder
        self.client = client
        self.position = {c.id: i for i, c in enumerate(self.chunks)}
        if len(self.position) != len(self.chunks):
            dupes = sorted(cid for cid, n in Counter(c.id for c in self.chunks).items() if n > 1)[:5]
            raise DataError(f"chunk ids must be unique; repeated: {', '.join(dupes)}")
        self.chunks_hash = chunks_hash(self.chunks)
        self._bm25: Any = None
        self._bm25_lock = threading.Lock()
        self._dense_lock = threading.Lock()
        self.collection: Any = None
        self.built = False
        if dense:
            self.ensure_dense()

    # -------------------------------------------------------- dense index

    def ensure_dense(self) -> bool:
        """Open or build the Chroma collection once; True if this call built it."""
        with self._dense_lock:
            if self.collection is not None:
                return False
            with span("index_build", key=self.key) as info:
                self.collection, self.built = self._open_or_build()
                info["built"] = self.built
            return self.built

    def _open_or_build(self) -> tuple[Any, bool]:
        import_chromadb()  # before chromadb.errors, which would import the package the slow way
        from chromadb.errors import NotFoundError

        try:
            collection = self.client.get_collection(self.key, embedding_function=None)
        except NotFoundError:
            collection = None
        if collection is not None:
            meta = collection.metadata or {}
            if meta.get("wb_chunks") == self.chunks_hash and meta.get("wb_complete") is True:
                if self._answers(collection):
                    return collection, False
                log.warning("Chroma collection %s is damaged (its index files cannot count or find its stored "
                            "vectors): rebuilt from the corpus", self.key)
            self.client.delete_collection(self.key)  # stale, half-built or damaged: rebuild from scratch
        # embedding_function=None: Chroma's default one downloads a model; we always pass vectors ourselves.
        collection = self.client.create_collection(
            self.key,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"wb_chunks": self.chunks_hash, "wb_complete": False, "wb_embedder": self.embedder.name},
            embedding_function=None,
        )
        batch = min(ADD_BATCH, self.client.get_max_batch_size())
        for begin in range(0, len(self.chunks), batch):
            part = self.chunks[begin : begin + batch]
            vectors = np.asarray(self.embedder.embed([c.text for c in part]), dtype=np.float32)
            for w in range(0, len(part), WRITE_BATCH):
                some = part[w : w + WRITE_BATCH]
                collection.add(
                    ids=[c.id for c in some],
                    embeddings=vectors[w : w + WRITE_BATCH],
                    documents=[c.text for c in some],
                    metadatas=[{"doc_id": c.doc_id, "start": c.start, "end": c.end} for c in some],
                )
        # Marked complete only after the last add: an interrupted build is never reused.
        collection.modify(
            metadata={"wb_chunks": self.chunks_hash, "wb_complete": True, "wb_embedder": self.embedder.name}
        )
        return collection, True

    def _answers(self, collection: Any) -> bool:
        """Complete, and a stored chunk's own vector finds a chunk: a truncated HNSW file made count() or
        query() raise, or queries silently find nothing."""
        try:
            if collection.count() != len(self.chunks):
                return False
            got = collection.get(ids=[self.chunks[0].id], include=["embeddings"])
            if not len(got["ids"]):
                return False
            hits = collection.query(query_embeddings=[got["embeddings"][0]], n_results=1, include=[])
            return len(hits["ids"][0]) == 1
        except Exception:  # chromadb's InternalError and friends: any failure here means rebuild
            return False

    def _dense(self, queries: Sequence[str], depth: int) -> list[list[tuple[int, float]]]:
        n = min(depth, len(self.chunks))
        if n == 0 or not queries:
            return [[] for _ in queries]
        self.ensure_dense()
        vectors = np.asarray(self.embedder.embed(list(queries)), dtype=np.float32)
        result = self.collection.query(query_embeddings=vectors, n_results=n, include=["distances"])
        return [
            [(self.position[cid], 1.0 - float(dist)) for cid, dist in zip(ids, dists)]
            for ids, dists in zip(result["ids"], result["distances"])
        ]

    # -------------------------------------------------------- BM25

    def _bm25_tokens(self, texts: Sequence[str]) -> list[list[str]]:
        bm25s = import_bm25s()

        quiet = logging.getLogger("bm25s")  # bm25s sets its own logger to DEBUG
        if quiet.level != logging.WARNING:  # setLevel clears every logger's cache: ~1 ms a query in a service
            quiet.setLevel(logging.WARNING)

        return bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False
        )

    def _bm25_index(self) -> Any:
        with self._bm25_lock:
            if self._bm25 is None:
                import Stemmer

                bm25s = import_bm25s()
                self._stemmer = Stemmer.Stemmer("english")
                # its numpy CSC backend (bm25s' default): scipy is not imported for it (`lean_imports`)
                retriever = bm25s.BM25(method=BM25_METHOD, k1=BM25_K1, b=BM25_B, csc_backend="numpy")
                retriever.index(self._bm25_tokens([c.text for c in self.chunks]), show_progress=False)
                self._bm25 = retriever
            return self._bm25

    def _sparse(self, queries: Sequence[str], depth: int) -> list[list[tuple[int, float]]]:
        """BM25 rankings; only chunks sharing a term with the query are returned, so a query made only
        of stop words (or words absent from the corpus) gets an empty list."""
        if not self.chunks or not queries:
            return [[] for _ in queries]
        retriever = self._bm25_index()
        with self._bm25_lock:  # PyStemmer objects are not thread-safe
            tokenized = self._bm25_tokens(queries)
        vocab = retriever.vocab_dict
        positions = np.arange(len(self.chunks))
        out: list[list[tuple[int, float]]] = []
        for tokens in tokenized:
            known = [t for t in tokens if t and t in vocab]
            if not known:
                out.append([])
                continue
            scores = np.asarray(retriever.get_scores(known), dtype=np.float64)
            matching = np.flatnonzero(scores > 0)
            best = matching[np.lexsort((positions[matching], -scores[matching]))][:depth]
            out.append([(int(i), float(scores[i])) for i in best])
        return out

    # -------------------------------------------------------- search

    def _hybrid(self, queries: Sequence[str], cfg: RetrievalConfig) -> list[list[tuple[int, float]]]:
        depth = max(cfg.candidates, cfg.k)  # fuse at least k per retriever so k results can come back
        dense, sparse = self._dense(queries, depth), self._sparse(queries, depth)
        fused = []
        for d, s in zip(dense, sparse):
            rankings = [[self.chunks[i].id for i, _ in d], [self.chunks[i].id for i, _ in s]]
            fused.append([(self.position[cid], score) for cid, score in rrf(rankings, cfg.k, cfg.rrf_k, self.position)])
        return fused

    def search(self, queries: Sequence[str], cfg: RetrievalConfig) -> list[list[Hit]]:
        """One best-first list of at most `cfg.k` hits per query, all queries in one batch."""
        try:
            retriever = RETRIEVERS[cfg.kind].search
        except KeyError:
            raise ConfigError(
                f"retrieval.kind: unknown kind {cfg.kind!r}; choose one of {', '.join(sorted(RETRIEVERS))}"
            ) from None
        queries = list(queries)
        rankings = retriever(self, queries, cfg)
        return [
            [Hit(chunk=self.chunks[i], score=score, rank=r) for r, (i, score) in enumerate(ranking[: cfg.k], start=1)]
            for ranking in rankings
        ]


@dataclass(frozen=True)
class Retriever:
    """A retrieval kind: its search (index, queries, config -> per query [(chunk position, score)], best
    first) and whether it needs the embedded Chroma collection (the runner builds those before use)."""

    search: Callable[[ChunkIndex, Sequence[str], RetrievalConfig], list[list[tuple[int, float]]]]
    needs_vectors: bool


# The names the YAML uses (RetrievalConfig.kind). A new retriever: one method/function + one entry here.
RETRIEVERS: dict[str, Retriever] = {
    "dense": Retriever(lambda index, queries, cfg: index._dense(queries, cfg.k), needs_vectors=True),
    "bm25": Retriever(lambda index, queries, cfg: index._sparse(queries, cfg.k), needs_vectors=False),
    "hybrid": Retriever(lambda index, queries, cfg: index._hybrid(queries, cfg), needs_vectors=True),
}


def needs_vectors(cfg: RetrievalConfig) -> bool:
    """Does this retrieval search the dense (embedded) index? BM25 alone never embeds the corpus."""
    return RETRIEVERS[cfg.kind].needs_vectors
