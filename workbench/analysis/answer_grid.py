"""Questions × variants, each cell the variant's answer and its score: the side-by-side answer grid.

A cell passes when it has no error and its score reaches `pass_at` in the metric's direction (≥ for
higher-is-better, ≤ for lower-is-better); a cell without a score (unscored) neither passes nor fails.
A question *fails* when any variant fails it and *divides* the variants when some pass and some fail:
the two filters a reader wants first. Pure data (no widgets, no HTML); `workbench.ui.answer_grid_view`
renders it.

>>> q = pd.DataFrame({"variant": ["a", "b"], "question_id": ["q1", "q1"], "question": ["Who?"] * 2,
...                   "answer": ["Denver", "Carolina"], "error": [None, None], "f1": [1.0, 0.0]})
>>> grid = answer_grid(q, "f1")
>>> [c.passed for c in grid.rows[0].cells], grid.rows[0].divides
([True, False], True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from workbench.analysis.paired import scored
from workbench.analysis.plots.labels import metric_range, short_labels, variant_labels
from workbench.analysis.stats import StatsError
from workbench.scoring.aggregate import direction

Show = Literal["all", "failures", "disagreements"]
SHOWS: tuple[str, ...] = ("all", "failures", "disagreements")


@dataclass(frozen=True)
class GridCell:
    answer: str | None
    score: float | None
    error: str | None
    passed: bool | None  # None: no score to judge


@dataclass(frozen=True)
class GridRow:
    question_id: str
    question: str
    references: tuple[str, ...]
    cells: tuple[GridCell, ...]  # one per variant, in `AnswerGrid.variants` order

    @property
    def fails(self) -> bool:
        return any(c.passed is False for c in self.cells)

    @property
    def divides(self) -> bool:
        verdicts = {c.passed for c in self.cells if c.passed is not None}
        return verdicts == {True, False}


@dataclass(frozen=True)
class AnswerGrid:
    metric: str
    pass_at: float
    better: Literal["max", "min"]
    score_range: tuple[float, float]  # what the colours span: the metric's bounds, else the data's
    variants: tuple[str, ...]
    labels: tuple[str, ...]  # short labels, one per variant
    full_labels: tuple[str, ...]
    rows: tuple[GridRow, ...]  # the rows `show` keeps, in dataset order
    show: str
    total: int  # questions before filtering
    failing: int
    dividing: int


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def answer_grid(questions: pd.DataFrame, metric: str = "f1", show: Show = "all", pass_at: float = 0.5,
                labels: Mapping[str, str] | pd.DataFrame | None = None) -> AnswerGrid:
    """The grid of `metric` over `results.questions()`; `show` keeps all questions, those any variant
    fails, or those that divide the variants. `labels`: variant -> label (or `results.to_frame()`)."""
    if show not in SHOWS:
        raise StatsError(f"show={show!r}; choose one of: {', '.join(SHOWS)}")
    if isinstance(pass_at, bool) or not isinstance(pass_at, (int, float)) or math.isnan(pass_at):
        raise StatsError(f"pass_at must be a number (the score a cell needs to pass), got {pass_at!r}")
    values = scored(questions, metric)  # checks the metric; failed cells have no value
    better = direction(metric)
    variants = [str(v) for v in dict.fromkeys(questions["variant"])]
    full = variant_labels(variants, labels)
    short = short_labels(full)
    cells = questions.drop_duplicates(["variant", "question_id"]).set_index(["question_id", "variant"])
    score = values.groupby(["question_id", "variant"])["value"].mean()
    rows = []
    for qid in dict.fromkeys(questions["question_id"]):
        out, first = [], None
        for v in variants:
            cell = cells.loc[(qid, v)] if (qid, v) in cells.index else None
            if cell is None:
                out.append(GridCell(None, None, "no result for this question", False))
                continue
            first = cell if first is None else first
            error = _text(cell.get("error")) or None
            value = None if error else score.get((qid, v))
            value = None if value is None else float(value)
            passed = False if error else None if value is None else bool(value >= pass_at if better == "max" else value <= pass_at)
            out.append(GridCell(_text(cell.get("answer")), value, error, passed))
        refs = first.get("reference_answers") if first is not None else None
        rows.append(GridRow(str(qid), _text(first.get("question")) if first is not None else str(qid),
                            tuple(str(r) for r in refs) if isinstance(refs, (list, tuple)) else (), tuple(out)))
    keep = {"all": lambda r: True, "failures": lambda r: r.fails, "disagreements": lambda r: r.divides}[show]
    bounds = metric_range(metric)
    if bounds is None:
        seen = values["value"]
        bounds = (float(seen.min()), float(seen.max())) if len(seen) and seen.min() < seen.max() else (0.0, 1.0)
    return AnswerGrid(
        metric=metric, pass_at=float(pass_at), better=better, score_range=bounds, variants=tuple(variants),
        labels=tuple(short[v] for v in variants), full_labels=tuple(full[v] for v in variants),
        rows=tuple(r for r in rows if keep(r)), show=show, total=len(rows),
        failing=sum(r.fails for r in rows), dividing=sum(r.divides for r in rows),
    )


__all__ = ["SHOWS", "AnswerGrid", "GridCell", "GridRow", "answer_grid"]
