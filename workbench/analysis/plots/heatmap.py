"""The score of every variant on every question: one labelled row per question, one column per variant.

Rows are questions (their text, shortened; the whole question, the answer and the score on hover),
ordered by how much the variants disagree; columns are variants by short label. The colour scale is
fixed to the metric's declared range (the catalogue's bounds: [0, 1] for every built-in score) and runs
red→green in the metric's direction, so a colour means the same in every notebook. `heatmap_info`
computes it (pure pandas); `plot_question_heatmap` draws it. Axes are numeric positions with tick labels,
so a clicked cell is (column, row) = (variant, question) and two questions with the same text stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.analysis.paired import scored
from workbench.analysis.plots.labels import SEP, colorscale_for, fmt, metric_range, short_labels, shorten, variant_labels
from workbench.analysis.stats import StatsError

QUESTION_CHARS = 70  # a row label: enough to recognise the question, short enough to leave room for cells
ROW_PX = 22
STACKED_UP_TO = 8  # up to this many variants, column labels are stacked horizontally; beyond, upright


class HeatmapInfo(NamedTuple):
    """What `plot_question_heatmap` draws. `matrix`: question × variant scores (NaN: failed or unscored),
    rows in `question_ids` order, columns in `variants` order; `hover[i][j]`: question i, variant j."""

    metric: str
    variants: tuple[str, ...]
    variant_labels: tuple[str, ...]  # short, one per column
    question_ids: tuple[str, ...]
    question_labels: tuple[str, ...]  # shortened text, unique, one per row
    matrix: pd.DataFrame
    hover: tuple[tuple[str, ...], ...]
    z_range: tuple[float, float] | None
    colorscale: str
    total_questions: int

    def cell_at(self, column: int, row: int) -> tuple[str, str]:
        """(variant, question id) of the cell at a column and row position (a click's x and y)."""
        return self.variants[int(round(column))], self.question_ids[int(round(row))]


def _question_labels(ids: list[str], texts: Mapping[str, str]) -> list[str]:
    short = [shorten(texts.get(q) or q, QUESTION_CHARS) for q in ids]
    repeated = {s for s in short if short.count(s) > 1}
    return [f"{s} ({q})" if s in repeated else s for s, q in zip(short, ids)]


def _hover(questions: pd.DataFrame, matrix: pd.DataFrame, labels: Mapping[str, str], metric: str) -> tuple:
    first = questions.drop_duplicates(["variant", "question_id"]).set_index(["variant", "question_id"])
    out = []
    for qid in matrix.index:
        row = []
        for v in matrix.columns:
            cell = first.loc[(v, qid)] if (v, qid) in first.index else pd.Series(dtype=object)
            error = cell.get("error")
            answer = f"error: {shorten(error, 200)}" if isinstance(error, str) and error else shorten(cell.get("answer"), 200)
            row.append(f"<b>{shorten(cell.get('question'), 200)}</b> ({qid})<br>{labels[v]} [{v}]<br>"
                       f"answer: {answer}<br>{metric}: {fmt(matrix.at[qid, v])}<br>click: open in the drill-down")
        out.append(tuple(row))
    return tuple(out)


def heatmap_info(questions: pd.DataFrame, metric: str = "f1", labels: Mapping[str, str] | pd.DataFrame | None = None,
                 max_questions: int | None = None) -> HeatmapInfo:
    """Question × variant scores of `metric`, the questions variants disagree on most first.

    Questions are ordered by the standard deviation of their score across variants (population,
    descending; questions with no score last; ties keep dataset order), then cut to `max_questions`.
    `labels`: variant -> full label (or `results.to_frame()`); the columns show the short labels.

    >>> q = pd.DataFrame({"variant": ["a", "a", "b", "b"], "question_id": ["q1", "q2"] * 2,
    ...                   "question": ["One?", "Two?"] * 2, "f1": [1.0, 1.0, 1.0, 0.0]})
    >>> info = heatmap_info(q, "f1")
    >>> info.question_ids, info.question_labels, info.z_range
    (('q2', 'q1'), ('Two?', 'One?'), (0.0, 1.0))
    """
    if max_questions is not None and (isinstance(max_questions, bool) or not isinstance(max_questions, int) or max_questions < 1):
        raise StatsError(f"max_questions must be a positive integer, got {max_questions!r}")
    values = scored(questions, metric)
    variants = [str(v) for v in dict.fromkeys(questions["variant"])]
    question_ids = list(dict.fromkeys(questions["question_id"]))
    matrix = values.groupby(["question_id", "variant"], sort=False)["value"].mean().unstack("variant")
    matrix = matrix.reindex(index=question_ids, columns=variants)
    spread = matrix.std(axis=1, ddof=0)
    order = (-spread.fillna(-1.0).to_numpy()).argsort(kind="stable")  # ties keep dataset order, no score last
    matrix = matrix.iloc[order[:max_questions] if max_questions else order]
    matrix.index.name, matrix.columns.name = "question_id", "variant"
    full = variant_labels(variants, labels)
    short = short_labels(full)
    texts = dict(zip(questions["question_id"], questions["question"])) if "question" in questions.columns else {}
    ids = [str(q) for q in matrix.index]
    return HeatmapInfo(
        metric=metric, variants=tuple(variants), variant_labels=tuple(short[v] for v in variants),
        question_ids=tuple(ids), question_labels=tuple(_question_labels(ids, texts)), matrix=matrix,
        hover=_hover(questions, matrix, full, metric), z_range=metric_range(metric),
        colorscale=colorscale_for(metric), total_questions=len(question_ids),
    )


def heatmap_figure(info: HeatmapInfo) -> go.Figure:
    """Draw a `heatmap_info` (for callers that keep the info to map clicks back to cells)."""
    rows, cols = info.matrix.shape
    low, high = info.z_range if info.z_range is not None else (None, None)
    fig = go.Figure(
        go.Heatmap(
            z=info.matrix.to_numpy(dtype=float),
            x=np.arange(cols),
            y=np.arange(rows),
            text=[list(r) for r in info.hover],
            hovertemplate="%{text}<extra></extra>",
            colorscale=info.colorscale,
            zmin=low,
            zmax=high,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": info.metric}, "thickness": 14},
        )
    )
    shown = f"the {rows} of {info.total_questions} questions" if rows < info.total_questions else f"all {rows} questions"
    # room above the cells for the column labels: stacked ones need a few lines, upright ones their length
    top = 90 if cols <= STACKED_UP_TO else 60 + int(7 * max(map(len, info.variant_labels), default=0))
    fig.update_layout(
        # the title at the very top, above the column labels' room
        title={"text": f"{info.metric} per question: {shown}, where variants disagree most first (grey: failed or unscored)",
               "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
        # few columns: one label part per line, horizontal; many: one line each, turned upright
        xaxis={"tickmode": "array", "tickvals": list(range(cols)), "tickangle": 0 if cols <= STACKED_UP_TO else -90,
               "ticktext": [label.replace(SEP, "<br>") if cols <= STACKED_UP_TO else label for label in info.variant_labels],
               "side": "top", "automargin": True, "showgrid": False, "zeroline": False},
        yaxis={"tickmode": "array", "tickvals": list(range(rows)), "ticktext": list(info.question_labels),
               "autorange": "reversed", "automargin": True, "showgrid": False, "zeroline": False},
        plot_bgcolor="#e0e0e0",
        template="plotly_white",
        autosize=True,
        height=top + 40 + ROW_PX * rows,
        margin={"l": 10, "r": 10, "b": 20, "t": top},
    )
    return fig


def plot_question_heatmap(questions: pd.DataFrame, metric: str = "f1", max_questions: int = 50,
                          labels: Mapping[str, str] | pd.DataFrame | None = None) -> go.Figure:
    """Heat map of `metric` per question (rows) and variant (columns), the `max_questions` most disputed
    questions; `labels`: variant -> label, or `results.to_frame()`, for readable column labels.

    >>> q = pd.DataFrame({"variant": ["a", "b"], "question_id": ["q1", "q1"], "question": ["Who?"] * 2,
    ...                   "answer": ["x", "y"], "f1": [1.0, 0.0]})
    >>> plot_question_heatmap(q).data[0].z.shape
    (1, 2)
    """
    if isinstance(max_questions, bool) or not isinstance(max_questions, int) or max_questions < 1:
        raise StatsError(f"max_questions must be a positive integer, got {max_questions!r}")
    return heatmap_figure(heatmap_info(questions, metric, labels, max_questions))
