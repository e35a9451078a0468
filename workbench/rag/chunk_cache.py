"""A corpus's chunks for one chunking, kept under the workbench home: a later sweep (or `load_pipeline`)
reads them instead of splitting again, so it never imports langchain's splitters and the tokenizer (~0.4 s
of a fresh `workbench run`'s start, before its first model call) and never re-splits a large corpus.

The file is keyed by the corpus digest, the chunking config and the versions of the code that splits
(langchain-text-splitters, the tokenizer's package, the workbench). What is read back is checked against the
corpus itself (every chunk's text is its document's text at its offsets); a file that fails
the check or cannot be read is split again and rewritten.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from workbench._version import __version__
from workbench.data.corpus import Corpus
from workbench.errors import StorageError
from workbench.files import write_atomically
from workbench.rag.chunking import TOKENIZER_RESOURCE, Chunk, chunk_corpus
from workbench.spec import ChunkingConfig, content_hash

log = logging.getLogger(__name__)


def _installed(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def chunks_key(corpus: Corpus, cfg: ChunkingConfig) -> str:
    return content_hash([corpus.digest, cfg.model_dump(mode="json"), _installed("langchain-text-splitters"),
                         _installed(TOKENIZER_RESOURCE[0]), __version__])


def _read(path: Path, corpus: Corpus) -> list[Chunk] | None:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["chunks"]
        chunks = [Chunk(str(i), str(d), str(t), int(a), int(b)) for i, d, t, a, b in rows]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s is not a readable chunk list (%s): the corpus is split again", path, exc)
        return None
    texts = {d.id: d.text for d in corpus.documents}
    if any(texts.get(c.doc_id, "")[c.start:c.end] != c.text for c in chunks):
        log.warning("%s does not match the corpus: it is split again", path)
        return None
    return chunks


def chunks_for(corpus: Corpus, cfg: ChunkingConfig, home: Path) -> list[Chunk]:
    """`chunk_corpus(corpus, cfg)`, from the home's chunk cache when it holds them."""
    path = Path(home) / "cache" / "chunks" / f"{chunks_key(corpus, cfg)}.json"
    chunks = _read(path, corpus)
    if chunks is not None:
        return chunks
    chunks = chunk_corpus(corpus, cfg)
    try:  # whole or absent: a reader never sees half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps({"chunks": [[c.id, c.doc_id, c.text, c.start, c.end] for c in chunks]}))
    except (OSError, StorageError) as exc:  # a read-only or full home still chunks, it only cannot keep them
        log.warning("could not keep the chunks in %s (%s)", path.parent, exc)
    return chunks


__all__ = ["chunks_for", "chunks_key"]
