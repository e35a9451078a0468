"""Index builds on a Ray cluster: a corpus's chunks embedded by Ray Data (`map_batches`, one actor per
embedding session) and written by the driver to the shared vector store.

It is only the embedder that changes: `RayDataEmbedder` stands in for the variant's embedder while
`ChunkIndex` builds the collection, so the collection's name (the content-addressed `index_key`), its
metadata, its completeness marker and the vectors themselves are those of the laptop path, and a
collection built either way is reused by every worker and every later sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workbench.rag.assemble import embedder_for
from workbench.spec import EmbeddingConfig

# Texts per Ray Data batch: the ONNX session runs them in its own batches (cfg.batch_size, 64 by default);
# a few of those per call keeps each actor busy while staying small enough to spread a corpus over actors.
BATCHES_PER_CALL = 4


class EmbedSession:
    """One Ray Data actor: one embedder (ONNX session or endpoint client, with its on-disk cache)."""

    def __init__(self, cfg_json: dict, home: str):
        self.embedder = embedder_for(EmbeddingConfig.model_validate(cfg_json), Path(home))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = np.asarray(self.embedder.embed([str(t) for t in batch["text"]]), dtype=np.float32)
        return {"i": batch["i"], "vector": vectors}


class RayDataEmbedder:
    """Embeds with Ray Data across the cluster; queries and names are the local embedder's."""

    def __init__(self, cfg: EmbeddingConfig, home: Path, sessions: int, *, share_cpu: bool = False):
        self.cfg, self.home, self.sessions = cfg, Path(home), max(1, sessions)
        self.local = embedder_for(cfg, self.home, share_cpu=share_cpu)  # its name goes in the collection's metadata
        self.name = getattr(self.local, "name", cfg.model)
        self.batches = 0  # Ray Data batches embedded (tests check the build went through Ray)

    def __getattr__(self, attr: str) -> Any:  # dim, close, ... as the local embedder has them
        return getattr(self.local, attr)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import ray

        if len(texts) < 2 * self.cfg.batch_size:  # a query or a handful: not worth a Ray Data job
            return self.local.embed(texts)
        batch = self.cfg.batch_size * BATCHES_PER_CALL
        ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)],
                                 override_num_blocks=max(1, min(self.sessions * 4, len(texts) // batch + 1)))
        out = ds.map_batches(EmbedSession, fn_constructor_args=(self.cfg.model_dump(mode="json"), str(self.home)),
                             batch_size=batch, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=min(self.sessions, len(texts) // batch + 1)),
                             num_cpus=1)
        vectors = np.zeros((len(texts), 0), dtype=np.float32)
        for part in out.iter_batches(batch_size=None, batch_format="numpy"):
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(texts), part["vector"].shape[1]), dtype=np.float32)
            vectors[part["i"]] = part["vector"]
            self.batches += 1
        return vectors
