"""Corpora: immutable documents plus loaders for the corpus formats of `workbench.spec.CorpusSource`.

    from workbench.spec import CorpusSource
    path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    corpus = load_corpus(CorpusSource(format="squad", path=path))

The digest is the sha256 of the canonical JSON of the loaded documents, so it does not depend on file
formatting, and a SQuAD corpus digest does not change when only its questions change.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from workbench.data.reading import (
    SHOW_MISSING, as_id, as_str, iter_jsonl, need_dir, need_file, read_text, required, special_kind,
    squad_paragraphs,
)
from workbench.errors import DataError
from workbench.spec import CorpusSource, content_hash

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
FOLDER_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Corpus:
    documents: tuple[Document, ...]
    digest: str
    source: str

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    @cached_property
    def _by_id(self) -> dict[str, Document]:
        return {d.id: d for d in self.documents}

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def get(self, doc_id: str, default: Document | None = None) -> Document | None:
        return self._by_id.get(doc_id, default)


def corpus_digest(documents: tuple[Document, ...]) -> str:
    return content_hash([[d.id, d.title, d.text] for d in documents])


def load_corpus(src: CorpusSource) -> Corpus:
    """Load the documents `src` points at.

    >>> from workbench.spec import CorpusSource
    >>> path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    >>> c = load_corpus(CorpusSource(format="squad", path=path))
    >>> len(c), c.documents[0].id
    (54, 'Super_Bowl_50/0')
    """
    loader = _CORPUS_LOADERS[src.format]
    docs = _corpus_folder(Path(src.path), src.follow_symlinks) if src.format == "folder" else loader(Path(src.path))
    return Corpus(documents=docs, digest=corpus_digest(docs), source=f"{src.format}:{src.path}")


# ---------------------------------------------------------------- formats


def _check_size(doc_id: str, text: str, where: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_DOCUMENT_BYTES:
        raise DataError(
            f"{where}: document {doc_id!r} is {size / 2**20:.1f} MB, above the "
            f"{MAX_DOCUMENT_BYTES / 2**20:.0f} MB limit for one document; split it into smaller documents"
        )


class _DocCollector:
    """Collects documents, rejecting duplicate ids and skipping empty texts (with a warning)."""

    def __init__(self, path: Path, unit: str = "documents") -> None:
        self.path, self.unit = path, unit
        self.docs: list[Document] = []
        self.seen: dict[str, str] = {}
        self.empty: list[str] = []

    def add(self, doc: Document, where: str) -> None:
        if doc.id in self.seen:
            raise DataError(
                f"{where}: duplicate document id {doc.id!r} (first at {self.seen[doc.id]}); document ids must be unique"
            )
        self.seen[doc.id] = where
        if not doc.text.strip():
            self.empty.append(doc.id)
            return
        _check_size(doc.id, doc.text, where)
        self.docs.append(doc)

    def result(self) -> tuple[Document, ...]:
        if not self.docs:
            if self.empty:
                raise DataError(
                    f"{self.path}: all {len(self.empty)} {self.unit} are empty (0 bytes or only whitespace); "
                    "add text to them or point the corpus at other files"
                )
            raise DataError(f"{self.path}: the corpus has no documents; add at least one")
        if self.empty:
            shown = ", ".join(repr(i) for i in self.empty[:SHOW_MISSING])
            log.warning("%s: skipped %d empty document(s): %s", self.path, len(self.empty), shown)
        return tuple(self.docs)


def _corpus_squad(path: Path) -> tuple[Document, ...]:
    docs = _DocCollector(path, "paragraphs")
    for where, title, p, paragraph in squad_paragraphs(path):
        context = as_str(required(paragraph, "context", where), "context", where)
        docs.add(Document(id=f"{title}/{p}", text=context, title=title), where)
    return docs.result()


def _corpus_jsonl(path: Path) -> tuple[Document, ...]:
    docs = _DocCollector(need_file(path, "corpus JSONL"))
    for where, obj in iter_jsonl(path):
        doc_id = as_id(required(obj, "id", where), "id", where)
        text = as_str(required(obj, "text", where), "text", where)
        title = obj.get("title")
        if title is not None:
            title = as_str(title, "title", where)
        meta = {k: v for k, v in obj.items() if k not in ("id", "text", "title")}
        docs.add(Document(id=doc_id, text=text, title=title, metadata=meta), where)
    return docs.result()


def _corpus_folder(path: Path, follow_symlinks: bool = False) -> tuple[Document, ...]:
    root = need_dir(path, "corpus")
    files, skipped = folder_files(root, follow_symlinks)
    if skipped:  # once, listing every path: a link may point at secrets (/proc/self/environ), a FIFO blocks
        log.warning("%s: skipped %d path(s) that are not regular files inside the folder: %s", root, len(skipped),
                    "; ".join(f"{p} ({why})" for p, why in skipped))
    if not files:
        raise DataError(f"{root}: no .txt or .md files found below this folder; add documents or fix the path")
    docs = _DocCollector(root, ".txt/.md files")
    for f in files:
        size = f.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise DataError(
                f"{f}: the file is {size / 2**20:.1f} MB, above the {MAX_DOCUMENT_BYTES / 2**20:.0f} MB limit "
                "for one document; split it into smaller files"
            )
        rel = f.relative_to(root).as_posix()
        docs.add(Document(id=rel, text=read_text(f, follow_symlinks=follow_symlinks), metadata={"path": rel}), str(f))
    return docs.result()


def folder_files(root: Path, follow_symlinks: bool = False) -> tuple[list[Path], list[tuple[str, str]]]:
    """(the .txt/.md regular files below `root` in path order, [(path, why skipped)]).

    Symbolic links (to files or folders) are skipped unless `follow_symlinks`; FIFOs, sockets and devices
    always are (opening a FIFO blocks until someone writes to it)."""
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    hint = "a symbolic link to {}; set data.corpus.follow_symlinks: true to read what it points to"
    seen: set[tuple[int, int]] = set()  # folders walked, by (device, inode): a link loop is walked once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_symlinks):
        base = Path(dirpath)
        st = base.stat()
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in list(dirnames):
            if (base / name).is_symlink() and not follow_symlinks:
                skipped.append((str(base / name), hint.format(os.readlink(base / name))))
        for name in filenames:
            f = base / name
            if f.suffix.lower() not in FOLDER_SUFFIXES:
                continue
            if f.is_symlink() and not follow_symlinks:
                skipped.append((str(f), hint.format(os.readlink(f))))
                continue
            try:
                mode = f.stat().st_mode
            except OSError as exc:  # a dangling link
                skipped.append((str(f), f"cannot be read: {exc.strerror}"))
                continue
            if not stat.S_ISREG(mode):
                skipped.append((str(f), f"{special_kind(mode)}, not a regular file"))
                continue
            files.append(f)
    files.sort(key=lambda f: f.relative_to(root).as_posix())
    return files, skipped


def _corpus_beir(path: Path) -> tuple[Document, ...]:
    file = need_file(need_dir(path, "BEIR") / "corpus.jsonl", "BEIR corpus.jsonl")
    docs = _DocCollector(file)
    for where, obj in iter_jsonl(file):
        doc_id = as_id(required(obj, "_id", where), "_id", where)
        body = as_str(required(obj, "text", where), "text", where)
        title = obj.get("title") or None
        if title is not None:
            title = as_str(title, "title", where)
        # BEIR indexes title and text joined by one space (sentence-transformers' and Anserini's convention).
        text = f"{title} {body}" if title and title.strip() else body
        meta = {k: v for k, v in obj.items() if k not in ("_id", "text", "title")}
        docs.add(Document(id=doc_id, text=text, title=title, metadata=meta), where)
    return docs.result()


_CORPUS_LOADERS = {"squad": _corpus_squad, "jsonl": _corpus_jsonl, "folder": _corpus_folder, "beir": _corpus_beir}
