"""Per-sweep reuse of what variants share: embedders, chunk lists, Chroma collections, retrieval results.

Everything is keyed by content, so variants with the same (corpus, chunking, embedding) share one index
and variants that also share the retrieval config share its results. `IndexQueue` builds indexes on one
thread, in the order variants ask for them, so BM25 variants (which never embed) start at once while a
dense index is still being embedded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from workbench.data.corpus import Corpus
from workbench.data.evalset import EvalItem
from workbench.events import point, span
from workbench.rag.assemble import build_index, embedder_for
from workbench.rag.pipeline import RAGPipeline
from workbench.rag.retrieval import ChunkIndex, index_key, needs_vectors
from workbench.rag.vector_store import open_vector_store
from workbench.runner.loop_priority import at_most
from workbench.spec import VariantConfig, content_hash
from workbench.spec_scale import VectorStoreConfig


def needs_dense(variant: VariantConfig) -> bool:
    return needs_vectors(variant.retrieval)


class _OnFirstUse:
    """An object made when first used (Chroma's client: its import and start cost seconds and ~50 MB)."""

    def __init__(self, make: Any) -> None:
        self._make, self._made, self._lock = make, None, threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._made is None:
                self._made = self._make()
        return getattr(self._made, name)


@dataclass
class Workspace:
    """Per-sweep reuse of embedders, indexes and retrieval results, keyed by content (thread-safe)."""

    home: Path
    corpus: Corpus
    memo: dict[tuple[str, str, str], tuple[list, float]] = field(default_factory=dict)
    share_cpu: bool = False  # indexes are built while model calls run: leave them a core
    vector_store: VectorStoreConfig = VectorStoreConfig()
    build_embedder: Any = None  # (cfg, home, share_cpu) -> embedder for index builds; None: embedder_for
    spare_core: Callable[[], bool] | None = None  # `lend_spare_core`

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        if self.vector_store.url is not None:  # a Chroma server: checked now, one clear error before any work
            self.client = open_vector_store(self.vector_store, self.home)
        else:  # embedded: made on first use, so a BM25-only sweep never opens Chroma
            self.client = _OnFirstUse(lambda: open_vector_store(self.vector_store, self.home))
        self._embedders: dict[str, Any] = {}
        self._indexes: dict[str, ChunkIndex] = {}
        self._dense_opened: set[str] = set()
        self.index_builds = 0  # Chroma collections built (embedding the chunks) by this sweep
        self.index_reused = 0  # complete collections found and reused

    def embedder(self, variant: VariantConfig):
        key = variant.embedding.vector_key
        if key not in self._embedders:
            make = self.build_embedder or embedder_for
            self._embedders[key] = make(variant.embedding, self.home, share_cpu=self.share_cpu)
            self._lend(self._embedders[key])
        return self._embedders[key]

    def lend_spare_core(self, spare: Callable[[], bool]) -> None:
        """While `spare()` (no model call out: the sweep waits for an index), the core an index build leaves the
        calls (`share_cpu`) embeds too (`embed_batches`): the build it waits for ends sooner."""
        self.spare_core = spare
        for made in self._embedders.values():
            self._lend(made)

    def _lend(self, made: Any) -> None:
        inner = getattr(made, "inner", made)  # behind its vector cache
        if self.share_cpu and self.spare_core is not None and hasattr(inner, "spare_core"):
            inner.spare_core = self.spare_core

    def index(self, variant: VariantConfig) -> ChunkIndex:
        """The variant's chunk index (chunked once per key); its dense collection is opened separately."""
        key = index_key(self.corpus.digest, variant.chunking, variant.embedding)
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = build_index(self.corpus, variant, self.home, embedder=self.embedder(variant),
                                                 client=self.client, dense=False)
            return self._indexes[key]

    def has_index(self, variant: VariantConfig) -> bool:
        """Is the variant's index (its dense collection, for dense retrieval) already open in this workspace?"""
        key = index_key(self.corpus.digest, variant.chunking, variant.embedding)
        return key in self._dense_opened if needs_dense(variant) else key in self._indexes

    def open_dense(self, variant: VariantConfig) -> ChunkIndex:
        """Open or build the variant's Chroma collection, once per sweep."""
        from filelock import FileLock

        index = self.index(variant)
        (self.home / "locks").mkdir(parents=True, exist_ok=True)
        # Another sweep on the same home may be building this very collection: build it once.
        with FileLock(str(self.home / "locks" / f"{index.key}.lock")):
            index.ensure_dense()
        with self._lock:
            if index.key not in self._dense_opened:
                self._dense_opened.add(index.key)
                self.index_builds += int(index.built)
                self.index_reused += int(not index.built)
        return index

    def embed_questions(self, variant: VariantConfig, questions: tuple[str, ...]) -> None:
        """The questions' vectors into the embedding cache in one batched call, so each dense search finds its
        query there instead of embedding it alone on the retrieval thread (100 SQuAD questions: 0.44 CPU s
        batched, 0.66 one by one); questions already cached are not embedded again."""
        if questions:
            self.embedder(variant).embed(list(dict.fromkeys(questions)))

    def retrieve(self, pipe: RAGPipeline, item: EvalItem) -> tuple[list, float]:
        key = (pipe.index.key, content_hash(pipe.variant.retrieval.model_dump(mode="json")), item.id)
        with span("retrieve"):
            if key not in self.memo:
                self.memo[key] = pipe.retrieve(item.question)
            return self.memo[key]

    def retrieve_batch(self, pipe: RAGPipeline, items: tuple[EvalItem, ...]) -> None:
        """Retrieval-only sweeps: one batched search; each question is charged the mean latency."""
        rkey = content_hash(pipe.variant.retrieval.model_dump(mode="json"))
        todo = [i for i in items if (pipe.index.key, rkey, i.id) not in self.memo]
        if not todo:
            return
        start = time.perf_counter()
        hits = pipe.index.search([i.question for i in todo], pipe.variant.retrieval)
        each = (time.perf_counter() - start) / len(todo)
        for item, h in zip(todo, hits):
            self.memo[(pipe.index.key, rkey, item.id)] = (h, each)


class IndexQueue:
    """Chunking and dense builds share one thread, in the order variants ask (BM25 ones first), so the
    first BM25 variant's chunks are ready before anything is embedded; retrieval never waits behind them."""

    def __init__(self, ws: Workspace, dense_after: asyncio.Event | None = None) -> None:
        self.ws = ws
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-index")
        self.dense_after = dense_after  # the first dense index opens (Chroma's ~1 s import) once it is set
        self._chunked: dict[str, asyncio.Future] = {}
        self._dense: dict[str, asyncio.Future] = {}
        self._queries: dict[tuple[str, tuple[str, ...]], asyncio.Future] = {}  # (embedding, questions) -> embedded

    def _in_pool(self, fn, variant: VariantConfig) -> asyncio.Future:
        return asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(self.pool, fn, variant))

    async def index_for(self, variant: VariantConfig, questions: tuple[str, ...] = ()) -> ChunkIndex:
        """The variant's index; for dense and hybrid retrieval, once its Chroma collection is ready and
        `questions` (those it will search) are embedded, in one batch per embedding model."""
        key = index_key(self.ws.corpus.digest, variant.chunking, variant.embedding)
        if key not in self._chunked:
            self._chunked[key] = self._in_pool(self.ws.index, variant)
        if not needs_dense(variant):
            return await self._chunked[key]
        if key not in self._dense:
            await self._chunked[key]
            if self.dense_after is not None and not self._dense:
                await at_most(self.dense_after)
            if key not in self._dense:
                self._dense[key] = self._in_pool(self.ws.open_dense, variant)
        asked = (variant.embedding.vector_key, questions)
        if questions and asked not in self._queries:  # queued right behind this build, before the next one
            self._queries[asked] = self._in_pool(lambda v: self.ws.embed_questions(v, questions), variant)
        index = await self._dense[key]
        if questions:
            await self._queries[asked]
        return index

    def close(self) -> None:
        self.pool.shutdown(wait=True)
