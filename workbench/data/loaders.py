"""Corpora and evaluation sets: immutable records plus loaders for the formats in `config.py`.

    from workbench.spec import CorpusSource, EvalSource
    path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    corpus = load_corpus(CorpusSource(format="squad", path=path))
    evalset = load_eval(EvalSource(format="squad", path=path, limit=20), corpus)

Every problem with an input file raises one `DataError` naming the file (and line, field or value) and
the fix. Digests are sha256 of the canonical JSON of the loaded content, so they do not depend on file
formatting, and a SQuAD corpus digest does not change when only its questions change.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from workbench.spec import CorpusSource, EvalSource, content_hash
from workbench.errors import DataError

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
FOLDER_SUFFIXES = (".txt", ".md")
_SHOW_MISSING = 5


# ---------------------------------------------------------------- records


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


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    reference_answers: tuple[str, ...]
    relevant_ids: tuple[str, ...] = ()
    # Graded relevance doc_id -> grade; defaults to grade 1 for each relevant id.
    relevance: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference_answers", tuple(self.reference_answers))
        object.__setattr__(self, "relevant_ids", tuple(self.relevant_ids))
        if not self.relevance:
            object.__setattr__(self, "relevance", {i: 1 for i in self.relevant_ids})


@dataclass(frozen=True)
class EvalSet:
    items: tuple[EvalItem, ...]
    digest: str
    source: str

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[EvalItem]:
        return iter(self.items)

    @property
    def has_relevance(self) -> bool:
        """True when at least one question names its relevant documents (retrieval metrics possible)."""
        return any(item.relevant_ids for item in self.items)

    @property
    def has_references(self) -> bool:
        """True when at least one question has reference answers (answer metrics possible)."""
        return any(item.reference_answers for item in self.items)


def corpus_digest(documents: tuple[Document, ...]) -> str:
    return content_hash([[d.id, d.title, d.text] for d in documents])


def eval_digest(items: tuple[EvalItem, ...]) -> str:
    return content_hash(
        [[i.id, i.question, list(i.reference_answers), list(i.relevant_ids), dict(i.relevance)] for i in items]
    )


# ---------------------------------------------------------------- public loaders


def load_corpus(src: CorpusSource) -> Corpus:
    """Load the documents `src` points at.

    >>> from workbench.spec import CorpusSource
    >>> path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    >>> c = load_corpus(CorpusSource(format="squad", path=path))
    >>> len(c), c.documents[0].id
    (54, 'Super_Bowl_50/0')
    """
    loader = _CORPUS_LOADERS[src.format]
    docs = loader(Path(src.path))
    return Corpus(documents=docs, digest=corpus_digest(docs), source=f"{src.format}:{src.path}")


def load_eval(src: EvalSource, corpus: Corpus | None = None) -> EvalSet:
    """Load the questions `src` points at; with `corpus`, check every relevant id is one of its documents.

    >>> from workbench.spec import EvalSource
    >>> path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    >>> e = load_eval(EvalSource(format="squad", path=path, limit=3))
    >>> len(e), e.items[0].relevant_ids
    (3, ('Super_Bowl_50/0',))
    """
    path = Path(src.path)
    items, where = _EVAL_LOADERS[src.format](path, src)
    _check_unique_questions(items)
    if not items:
        raise DataError(f"{where}: no questions found; add at least one question")
    kept = tuple(item for item, _ in items[: src.limit])
    if corpus is not None:
        _check_relevant_ids(kept, corpus, where)
    source = f"{src.format}:{src.path}"
    if src.format == "beir":
        source += f" split={src.split}"
    if src.limit is not None:
        source += f" limit={src.limit}"
    return EvalSet(items=kept, digest=eval_digest(kept), source=source)


# ---------------------------------------------------------------- file helpers


def _need_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected the {what} file")
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found ({_relative_hint(path)})")
    return path


def _need_dir(path: Path, what: str) -> Path:
    if path.is_file():
        raise DataError(f"{path}: is a file, expected the {what} folder")
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found ({_relative_hint(path)})")
    return path


def _relative_hint(path: Path) -> str:
    if path.is_absolute():
        return "check the path"
    return f"relative paths are resolved from the working directory {Path.cwd()}; check the path"


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (invalid byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location 'file:line', object) for each non-blank line."""
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {_type_name(obj)}")
        yield where, obj


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def _get(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        found = ", ".join(repr(k) for k in obj) or "none"
        raise DataError(f"{where}: missing required field {key!r} (fields found: {found})")
    return obj[key]


def _as_str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {_type_name(value)} ({value!r})")
    return value


def _as_id(value: Any, key: str, where: str) -> str:
    """Ids are strings; whole numbers are accepted and turned into strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _as_str(value, key, where)
    if not text.strip():
        raise DataError(f"{where}: field {key!r} is empty; give every record a non-empty id")
    return text


def _as_str_list(value: Any, key: str, where: str, ids: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DataError(f"{where}: field {key!r} must be a list of strings, got {_type_name(value)} ({value!r})")
    out = []
    for i, v in enumerate(value):
        out.append(_as_id(v, f"{key}[{i}]", where) if ids else _as_str(v, f"{key}[{i}]", where))
    return tuple(out)


def _dedup(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v.strip()))


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
            shown = ", ".join(repr(i) for i in self.empty[:_SHOW_MISSING])
            log.warning("%s: skipped %d empty document(s): %s", self.path, len(self.empty), shown)
        return tuple(self.docs)


# ---------------------------------------------------------------- corpus formats


def _squad_articles(path: Path) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """Yield (json location, article title, paragraph index, paragraph) of a SQuAD v1.1 file."""
    data = _read_json(_need_file(path, "SQuAD JSON"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: not a SQuAD v1.1 file; expected an object with a 'data' list of articles")
    for a, article in enumerate(data["data"]):
        where = f"{path}: data[{a}]"
        if not isinstance(article, dict):
            raise DataError(f"{where}: expected an article object, got {_type_name(article)}")
        title = _as_str(_get(article, "title", where), "title", where)
        paragraphs = _get(article, "paragraphs", where)
        if not isinstance(paragraphs, list):
            raise DataError(f"{where}: field 'paragraphs' must be a list, got {_type_name(paragraphs)}")
        for p, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise DataError(f"{pwhere}: expected a paragraph object, got {_type_name(paragraph)}")
            yield pwhere, title, p, paragraph


def _corpus_squad(path: Path) -> tuple[Document, ...]:
    docs = _DocCollector(path, "paragraphs")
    for where, title, p, paragraph in _squad_articles(path):
        context = _as_str(_get(paragraph, "context", where), "context", where)
        docs.add(Document(id=f"{title}/{p}", text=context, title=title), where)
    return docs.result()


def _corpus_jsonl(path: Path) -> tuple[Document, ...]:
    docs = _DocCollector(_need_file(path, "corpus JSONL"))
    for where, obj in _iter_jsonl(path):
        doc_id = _as_id(_get(obj, "id", where), "id", where)
        text = _as_str(_get(obj, "text", where), "text", where)
        title = obj.get("title")
        if title is not None:
            title = _as_str(title, "title", where)
        meta = {k: v for k, v in obj.items() if k not in ("id", "text", "title")}
        docs.add(Document(id=doc_id, text=text, title=title, metadata=meta), where)
    return docs.result()


def _corpus_folder(path: Path) -> tuple[Document, ...]:
    root = _need_dir(path, "corpus")
    files = sorted(
        (f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES),
        key=lambda f: f.relative_to(root).as_posix(),
    )
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
        docs.add(Document(id=rel, text=_read_text(f), metadata={"path": rel}), str(f))
    return docs.result()


def _corpus_beir(path: Path) -> tuple[Document, ...]:
    file = _need_file(_need_dir(path, "BEIR") / "corpus.jsonl", "BEIR corpus.jsonl")
    docs = _DocCollector(file)
    for where, obj in _iter_jsonl(file):
        doc_id = _as_id(_get(obj, "_id", where), "_id", where)
        body = _as_str(_get(obj, "text", where), "text", where)
        title = obj.get("title") or None
        if title is not None:
            title = _as_str(title, "title", where)
        # BEIR indexes title and text joined by one space (sentence-transformers' and Anserini's convention).
        text = f"{title} {body}" if title and title.strip() else body
        meta = {k: v for k, v in obj.items() if k not in ("_id", "text", "title")}
        docs.add(Document(id=doc_id, text=text, title=title, metadata=meta), where)
    return docs.result()


_CORPUS_LOADERS = {"squad": _corpus_squad, "jsonl": _corpus_jsonl, "folder": _corpus_folder, "beir": _corpus_beir}


# ---------------------------------------------------------------- eval formats

# Each loader returns ([(item, where)], file named in "no questions" errors), all questions in file order.
_Located = list[tuple[EvalItem, str]]


def _question(value: Any, where: str, key: str = "question") -> str:
    text = _as_str(value, key, where)
    if not text.strip():
        raise DataError(f"{where}: the question (field {key!r}) is empty; write the question or remove the record")
    return text


def _eval_squad(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    items: _Located = []
    for pwhere, title, p, paragraph in _squad_articles(path):
        qas = _get(paragraph, "qas", pwhere)
        if not isinstance(qas, list):
            raise DataError(f"{pwhere}: field 'qas' must be a list, got {_type_name(qas)}")
        for q, qa in enumerate(qas):
            where = f"{pwhere}.qas[{q}]"
            if not isinstance(qa, dict):
                raise DataError(f"{where}: expected a question object, got {_type_name(qa)}")
            qid = _as_id(_get(qa, "id", where), "id", where)
            question = _question(_get(qa, "question", where), where)
            answers = qa.get("answers") or []
            if not isinstance(answers, list):
                raise DataError(f"{where}: field 'answers' must be a list, got {_type_name(answers)}")
            texts = []
            for n, ans in enumerate(answers):
                if not isinstance(ans, dict):
                    raise DataError(f"{where}.answers[{n}]: expected an object with 'text', got {_type_name(ans)}")
                texts.append(_as_str(_get(ans, "text", f"{where}.answers[{n}]"), "text", f"{where}.answers[{n}]"))
            item = EvalItem(id=qid, question=question, reference_answers=_dedup(texts), relevant_ids=(f"{title}/{p}",))
            items.append((item, where))
    return items, path


def _eval_jsonl(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    items: _Located = []
    for where, obj in _iter_jsonl(_need_file(path, "eval JSONL")):
        qid = _as_id(_get(obj, "id", where), "id", where)
        question = _question(_get(obj, "question", where), where)
        refs = _as_str_list(_get(obj, "reference_answers", where), "reference_answers", where)
        rel = obj.get("relevant_ids")
        rel_ids = () if rel is None else _as_str_list(rel, "relevant_ids", where, ids=True)
        items.append((EvalItem(qid, question, _dedup(refs), _dedup(rel_ids)), where))
    return items, path


def _csv_list(cell: str | None, column: str, where: str) -> tuple[str, ...]:
    """A list cell: a JSON list (["a", "b"]) or values separated by |."""
    cell = (cell or "").strip()
    if not cell:
        return ()
    if cell.startswith("[") and cell.endswith("]"):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: column {column!r} looks like a JSON list but is not valid JSON ({exc.msg}): {cell!r}; "
                'write it as ["a", "b"] or a|b'
            ) from None
        return _dedup(_as_str_list(value, column, where, ids=column == "relevant_ids"))
    return _dedup([v.strip() for v in cell.split("|")])


def _eval_csv(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    text = _read_text(_need_file(path, "eval CSV"))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise DataError(
                f"{path}: the file is empty; expected a header row id,question,reference_answers[,relevant_ids]"
            )
        header = [h.strip() for h in header]
        reader.fieldnames = header
        missing = [c for c in ("id", "question", "reference_answers") if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing required column(s) {', '.join(repr(c) for c in missing)} "
                f"(columns found: {', '.join(repr(h) for h in header)})"
            )
        items: _Located = []
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue
            if None in row:
                raise DataError(f"{where}: more cells than columns ({len(header)}); quote cells that contain commas")
            qid = _as_id((row.get("id") or "").strip(), "id", where)
            question = _question(row.get("question") or "", where)
            refs = _csv_list(row.get("reference_answers"), "reference_answers", where)
            rel_ids = _csv_list(row.get("relevant_ids"), "relevant_ids", where)
            items.append((EvalItem(qid, question, refs, rel_ids), where))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    return items, path


def _eval_beir(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    root = _need_dir(path, "BEIR")
    qrels_path = root / "qrels" / f"{src.split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(
            f"{qrels_path}: qrels file not found; available splits: {', '.join(splits) or 'none'} (set eval.split)"
        )
    qrels = _read_qrels(qrels_path)
    queries_path = _need_file(root / "queries.jsonl", "BEIR queries.jsonl")
    items: _Located = []
    seen = set()
    for where, obj in _iter_jsonl(queries_path):
        qid = _as_id(_get(obj, "_id", where), "_id", where)
        seen.add(qid)
        if qid not in qrels:
            continue
        question = _question(_get(obj, "text", where), where, "text")
        grades = qrels[qid]
        relevant = tuple(d for d, g in grades.items() if g > 0)
        items.append((EvalItem(qid, question, (), relevant, dict(grades)), where))
    unknown = [q for q in qrels if q not in seen]
    if unknown:
        log.warning("%s: %d query id(s) have no query in %s, ignored: %s", qrels_path, len(unknown), queries_path,
                    ", ".join(unknown[:_SHOW_MISSING]))
    if not items:
        raise DataError(f"{queries_path}: no query appears in {qrels_path}; check the split and the query ids")
    return items, queries_path


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("\t")]
        if lineno == 1 and cells[:2] == ["query-id", "corpus-id"]:
            continue
        where = f"{path}:{lineno}"
        if len(cells) != 3:
            raise DataError(
                f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cells)}: {line!r}"
            )
        qid, doc_id, score = cells
        try:
            grade = int(score)
        except ValueError:
            raise DataError(f"{where}: score {score!r} is not a whole number") from None
        qrels.setdefault(qid, {})[doc_id] = grade
    if not qrels:
        raise DataError(f"{path}: the qrels file has no judgements")
    return qrels


_EVAL_LOADERS = {"squad": _eval_squad, "jsonl": _eval_jsonl, "csv": _eval_csv, "beir": _eval_beir}


# ---------------------------------------------------------------- eval checks


def _check_unique_questions(items: _Located) -> None:
    seen: dict[str, str] = {}
    for item, where in items:
        if item.id in seen:
            raise DataError(
                f"{where}: duplicate question id {item.id!r} (first at {seen[item.id]}); question ids must be unique"
            )
        seen[item.id] = where


def _check_relevant_ids(items: tuple[EvalItem, ...], corpus: Corpus, where: Path) -> None:
    ids = corpus.ids
    missing = [(doc_id, item.id) for item in items for doc_id in item.relevant_ids if doc_id not in ids]
    if missing:
        shown = ", ".join(f"{d!r} (question {q!r})" for d, q in missing[:_SHOW_MISSING])
        more = f" and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
        raise DataError(
            f"{where}: {len(missing)} relevant id(s) are not documents of the corpus {corpus.source}: {shown}{more}; "
            "check that the eval set and the corpus belong together"
        )
