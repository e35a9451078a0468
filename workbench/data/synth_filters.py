"""Pure parts of synthetic eval sets: the stratified chunk sample, the filters, the report, the JSONL.

The model calls live in `workbench.runner.synth`; everything here is a function of its arguments, so
the filters are tested on hand-made cases. Text comparisons take a `norm` function (the runner passes
SQuAD's `normalize_answer`, which lives in scoring, a layer above this one).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from workbench.errors import DataError

T = TypeVar("T")
Norm = Callable[[str], str]
FILTERS = ("parsed", "grounded", "no_answer_leak", "not_duplicate", "answerable")


def stratified_sample(groups: Mapping[str, Sequence[T]], seed: int) -> list[T]:
    """Every item of every group, ordered so each prefix is spread evenly over the groups.

    Round-robin over the groups (in a seeded order), each group's items in a seeded order: the first
    len(groups) items come from different documents, and so on; the same seed gives the same order.
    """
    rng = random.Random(seed)
    keys = sorted(groups)
    rng.shuffle(keys)
    queues = {k: rng.sample(list(groups[k]), len(groups[k])) for k in keys}
    out: list[T] = []
    while any(queues.values()):
        for k in keys:
            if queues[k]:
                out.append(queues[k].pop())
    return out


def grounded(answer: str, span: str, texts: Sequence[str], norm: Norm, *, answer_verbatim: bool = True) -> bool:
    """The answer occurs in the chunk(s) (after normalisation); with `answer_verbatim=False` (why/how
    answers are paraphrases) the answer or the supporting span may."""
    hay = [norm(t) for t in texts]
    needles = (norm(answer),) if answer_verbatim else (norm(answer), norm(span))
    return any(needle and any(needle in h for h in hay) for needle in needles)


_WORD = re.compile(r"\w+(?:['’-]\w+)*")
# Clauses too (";"): a small model copies one clause of a long sentence as its span.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
STOPWORDS = frozenset("a an the of in on at to for by and or is was were be been it its as with from that this "
                       "which who what when where why how did do does has have had are not but than into".split())


def span_in_chunk(span: str, texts: Sequence[str], min_overlap: float = 0.7) -> str | None:
    """The chunk sentence the model's span copies: the sentence holding most of the span's words (at
    least `min_overlap` of them; a small model copies with slips). None when no sentence does."""
    want = [w.lower() for w in _WORD.findall(span)]
    if not want:
        return None
    best, best_share = None, 0.0
    for text in texts:
        for sentence in _SENTENCE_END.split(text):
            have = {w.lower() for w in _WORD.findall(sentence)}
            share = sum(w in have for w in want) / len(want)
            if share > best_share:
                best, best_share = sentence.strip(), share
    return best if best_share >= min_overlap else None


def answer_from_span(answer: str, sentence: str, max_words: int = 8) -> str | None:
    """The answer taken from the grounded span: the longest run of the answer's words that the sentence
    has in the same order, as the sentence writes it, without stop words at either end; None when
    nothing but stop words is shared."""
    words = [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(sentence)]
    ans = [w.lower() for w in _WORD.findall(answer)]
    best = (0, 0)  # (length, end index in words)
    for i in range(len(words)):
        for j in range(len(ans)):
            k = 0
            while i + k < len(words) and j + k < len(ans) and words[i + k][0] == ans[j + k]:
                k += 1
            if k > best[0]:
                best = (k, i + k)
    k, end = best
    run = words[end - k:end]
    while run and run[0][0] in STOPWORDS:  # "on February 7" -> "February 7"
        run = run[1:]
    while run and run[-1][0] in STOPWORDS:
        run = run[:-1]
    run = run[:max_words]
    if not run:
        return None
    return sentence[run[0][1]:run[-1][2]]


def leaks_answer(question: str, answer: str, norm: Norm) -> bool:
    """The question already contains the answer (a question that answers itself tests nothing)."""
    a = norm(answer)
    return not a or f" {a} " in f" {norm(question)} "


def near_duplicates(vectors: np.ndarray, threshold: float, kept: np.ndarray | None = None) -> list[bool]:
    """For each row (in order): True when its cosine with an earlier kept row (or a row of `kept`)
    reaches `threshold`. Rows need not be normalised."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    pool = [] if kept is None or len(kept) == 0 else list(
        np.asarray(kept, dtype=np.float64) / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-12))
    out = []
    for row in v:
        dup = bool(pool) and float(np.max(np.stack(pool) @ row)) >= threshold
        out.append(dup)
        if not dup:
            pool.append(row)
    return out


def answers_agree(answer: str, other: str, norm: Norm, f1: Callable[[str, Sequence[str]], float | None]) -> bool:
    """The answerability check: the model's answer from the chunk alone matches the generated one
    (token F1 at least 0.5, or one contains the other)."""
    a, b = norm(answer), norm(other)
    if not a or not b:
        return False
    return a in b or b in a or (f1(other, [answer]) or 0.0) >= 0.5


@dataclass
class SynthReport:
    """What the filters did: attempts, passes per filter (in order; a rejected candidate stops at its
    first failed filter) and the acceptance rate."""

    wanted: int
    attempts: int = 0
    passed: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    by_style: Counter = field(default_factory=Counter)
    accepted: int = 0
    filters: tuple[str, ...] = FILTERS
    retries: int = 0  # second calls after a reply that did not parse
    stopped: str | None = None  # why generation stopped before `wanted` (a wall-time cap)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def record(self, checks: Mapping[str, bool], style: str, candidate: Mapping[str, Any]) -> bool:
        """Count one candidate's filter results (checked in `filters` order); True when accepted."""
        self.attempts += 1
        for name in self.filters:
            if name not in checks:
                continue  # a filter that is off (answerability) or not reached
            if checks[name]:
                self.passed[name] += 1
            else:
                self.rejected[name] += 1
                shown = self.examples.setdefault(name, [])
                if len(shown) < 3:
                    shown.append(dict(candidate))
                return False
        self.accepted += 1
        self.by_style[style] += 1
        return True

    def acceptance_rate(self, name: str | None = None) -> float | None:
        """Accepted / attempts; with `name`, the share of candidates reaching that filter that passed it."""
        if name is None:
            return self.accepted / self.attempts if self.attempts else None
        seen = self.passed[name] + self.rejected[name]
        return self.passed[name] / seen if seen else None

    def to_dict(self) -> dict[str, Any]:
        per = {n: {"passed": self.passed[n], "rejected": self.rejected[n], "acceptance_rate": self.acceptance_rate(n)}
               for n in self.filters if self.passed[n] + self.rejected[n]}
        return {"wanted": self.wanted, "attempts": self.attempts, "accepted": self.accepted,
                "acceptance_rate": self.acceptance_rate(), "filters": per, "by_style": dict(self.by_style),
                "retries": self.retries, "stopped": self.stopped, "rejected_examples": self.examples}

    def lines(self) -> list[str]:
        rate = self.acceptance_rate()
        out = [f"accepted {self.accepted} of {self.attempts} candidates ({0 if rate is None else rate:.0%}); "
               f"wanted {self.wanted}; by style: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_style.items()))
               + (f"; {self.retries} retried after a reply that did not parse" if self.retries else "")
               + (f"; stopped: {self.stopped}" if self.stopped else "")]
        for n in self.filters:
            if self.passed[n] + self.rejected[n]:
                out.append(f"  {n:<15} passed {self.passed[n]:>4}  rejected {self.rejected[n]:>4}")
        return out


def write_eval_jsonl(rows: Sequence[Mapping[str, Any]], out: Path, *, overwrite: bool = False) -> Path:
    """The project's eval JSONL (id, question, reference_answers, relevant_ids, + provenance); never
    replaces an existing file unless asked."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: the file exists; choose another --out (an eval set is never overwritten)")
    if out.parent and not out.parent.exists():
        raise DataError(f"{out}: the folder {out.parent} does not exist; create it or choose another --out")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    tmp.replace(out)
    return out
