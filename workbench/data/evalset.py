"""Evaluation sets: immutable questions plus loaders for the formats of `workbench.spec.EvalSource`.

    from workbench.spec import EvalSource
    path = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
    evalset = load_eval(EvalSource(format="squad", path=path, limit=20), corpus)

The digest is the sha256 of the canonical JSON of the loaded questions, so it does not depend on file
formatting. Given a corpus, every relevant id must name one of its documents.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.data.corpus import Corpus
from workbench.data.reading import (
    SHOW_MISSING, as_id, as_str, as_str_list, dedup, iter_jsonl, need_dir, need_file, read_text, required,
    squad_paragraphs, type_name,
)
from workbench.errors import DataError
from workbench.spec import EvalSource, content_hash

log = logging.getLogger(__name__)


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


def eval_digest(items: tuple[EvalItem, ...]) -> str:
    return content_hash(
        [[i.id, i.question, list(i.reference_answers), list(i.relevant_ids), dict(i.relevance)] for i in items]
    )


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


# ---------------------------------------------------------------- eval formats

# Each loader returns ([(item, where)], file named in "no questions" errors), all questions in file order.
_Located = list[tuple[EvalItem, str]]


def _question(value: Any, where: str, key: str = "question") -> str:
    text = as_str(value, key, where)
    if not text.strip():
        raise DataError(f"{where}: the question (field {key!r}) is empty; write the question or remove the record")
    return text


def _eval_squad(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    items: _Located = []
    for pwhere, title, p, paragraph in squad_paragraphs(path):
        qas = required(paragraph, "qas", pwhere)
        if not isinstance(qas, list):
            raise DataError(f"{pwhere}: field 'qas' must be a list, got {type_name(qas)}")
        for q, qa in enumerate(qas):
            where = f"{pwhere}.qas[{q}]"
            if not isinstance(qa, dict):
                raise DataError(f"{where}: expected a question object, got {type_name(qa)}")
            qid = as_id(required(qa, "id", where), "id", where)
            question = _question(required(qa, "question", where), where)
            answers = qa.get("answers") or []
            if not isinstance(answers, list):
                raise DataError(f"{where}: field 'answers' must be a list, got {type_name(answers)}")
            texts = []
            for n, ans in enumerate(answers):
                if not isinstance(ans, dict):
                    raise DataError(f"{where}.answers[{n}]: expected an object with 'text', got {type_name(ans)}")
                texts.append(as_str(required(ans, "text", f"{where}.answers[{n}]"), "text", f"{where}.answers[{n}]"))
            item = EvalItem(id=qid, question=question, reference_answers=dedup(texts), relevant_ids=(f"{title}/{p}",))
            items.append((item, where))
    return items, path


def _eval_jsonl(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    items: _Located = []
    for where, obj in iter_jsonl(need_file(path, "eval JSONL")):
        qid = as_id(required(obj, "id", where), "id", where)
        question = _question(required(obj, "question", where), where)
        refs = as_str_list(required(obj, "reference_answers", where), "reference_answers", where)
        rel = obj.get("relevant_ids")
        rel_ids = () if rel is None else as_str_list(rel, "relevant_ids", where, ids=True)
        items.append((EvalItem(qid, question, dedup(refs), dedup(rel_ids)), where))
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
        return dedup(as_str_list(value, column, where, ids=column == "relevant_ids"))
    return dedup([v.strip() for v in cell.split("|")])


def _eval_csv(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    text = read_text(need_file(path, "eval CSV"))
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
            qid = as_id((row.get("id") or "").strip(), "id", where)
            question = _question(row.get("question") or "", where)
            refs = _csv_list(row.get("reference_answers"), "reference_answers", where)
            rel_ids = _csv_list(row.get("relevant_ids"), "relevant_ids", where)
            items.append((EvalItem(qid, question, refs, rel_ids), where))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    return items, path


def _eval_beir(path: Path, src: EvalSource) -> tuple[_Located, Path]:
    root = need_dir(path, "BEIR")
    qrels_path = root / "qrels" / f"{src.split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(
            f"{qrels_path}: qrels file not found; available splits: {', '.join(splits) or 'none'} (set eval.split)"
        )
    qrels = _read_qrels(qrels_path)
    queries_path = need_file(root / "queries.jsonl", "BEIR queries.jsonl")
    items: _Located = []
    seen = set()
    for where, obj in iter_jsonl(queries_path):
        qid = as_id(required(obj, "_id", where), "_id", where)
        seen.add(qid)
        if qid not in qrels:
            continue
        question = _question(required(obj, "text", where), where, "text")
        grades = qrels[qid]
        relevant = tuple(d for d, g in grades.items() if g > 0)
        items.append((EvalItem(qid, question, (), relevant, dict(grades)), where))
    unknown = [q for q in qrels if q not in seen]
    if unknown:
        log.warning("%s: %d query id(s) have no query in %s, ignored: %s", qrels_path, len(unknown), queries_path,
                    ", ".join(unknown[:SHOW_MISSING]))
    if not items:
        raise DataError(f"{queries_path}: no query appears in {qrels_path}; check the split and the query ids")
    return items, queries_path


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
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
        shown = ", ".join(f"{d!r} (question {q!r})" for d, q in missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise DataError(
            f"{where}: {len(missing)} relevant id(s) are not documents of the corpus {corpus.source}: {shown}{more}; "
            "check that the eval set and the corpus belong together"
        )
