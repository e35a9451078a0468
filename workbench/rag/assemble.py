"""The one place a variant's pipeline is put together — index, embedder, chat model — used by the sweep
and by production (`load_pipeline`), so an exported configuration answers with exactly what was measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.data.corpus import Corpus
from workbench.rag.chat import ChatModel
from workbench.rag.chunk_cache import chunks_for
from workbench.rag.embeddings import Embedder, make_embedder
from workbench.rag.pipeline import RAGPipeline
from workbench.rag.retrieval import ChunkIndex, chroma_client, index_key
from workbench.spec import EmbeddingConfig, ExecutionConfig, ModelConfig, VariantConfig


def embedder_for(cfg: EmbeddingConfig, home: Path, *, share_cpu: bool = False) -> Embedder:
    """The variant's embedder, with its on-disk cache under the workbench home."""
    return make_embedder(cfg, cache_dir=Path(home) / "cache" / "embeddings", share_cpu=share_cpu)


def build_index(corpus: Corpus, variant: VariantConfig, home: Path, *, embedder: Embedder | None = None,
                client: Any = None, dense: bool = True) -> ChunkIndex:
    """Chunk the corpus (or read its chunks from the home) and open (or build) the variant's index; one Chroma collection per
    (corpus, chunking, embedding). With dense=False the collection waits for the first dense search."""
    home = Path(home)
    return ChunkIndex(
        index_key(corpus.digest, variant.chunking, variant.embedding),
        chunks_for(corpus, variant.chunking, home),
        embedder or embedder_for(variant.embedding, home),
        client if client is not None else chroma_client(home / "chroma"),
        dense=dense,
    )


def chat_model(cfg: ModelConfig, base_url: str | None, execution: ExecutionConfig | None = None, *,
               logprobs: bool = False) -> ChatModel:
    """The chat client; a sweep passes its execution settings (timeouts, retries, connection pool).
    `logprobs`: ask for token log-probs (a cascade's answer_logprob_mean signal)."""
    if execution is None:
        return ChatModel(cfg, base_url=base_url, logprobs=logprobs)
    return ChatModel(
        cfg,
        base_url=base_url,
        timeout=execution.timeout_s,
        max_retries=execution.max_retries,
        max_connections=max(execution.concurrency, execution.local_concurrency) * 2,
        logprobs=logprobs,
    )


def build_pipeline(variant: VariantConfig, index: ChunkIndex, model: ChatModel | None) -> RAGPipeline:
    """Retrieve → prompt → generate for one variant (model None: retrieval only)."""
    return RAGPipeline(variant, index, model)
