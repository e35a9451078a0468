"""The answer grid as HTML in a widget: questions down, variants across, each answer on a background
coloured by its score (red→green in the metric's direction), with a metric choice and the two filters
a reader wants first: questions any variant fails, and questions that divide the variants.

The data is `workbench.analysis.answer_grid.answer_grid` (pure); this module only draws it.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W
from plotly.colors import sample_colorscale, unlabel_rgb

from workbench.analysis.answer_grid import SHOWS, AnswerGrid, GridCell, answer_grid
from workbench.analysis.plots.labels import GOOD_TO_BAD, shorten
from workbench.errors import WorkbenchError
from workbench.ui.common import fmt, message, set_options

MAX_ROWS = 200  # an HTML table this long still scrolls smoothly
ANSWER_CHARS = 240
_SHOW_LABELS = {"all": "all questions", "failures": "failures", "disagreements": "variants disagree"}


def _background(cell: GridCell, grid: AnswerGrid) -> str:
    if cell.error:
        return "#eeeeee"
    if cell.score is None:
        return "#ffffff"
    low, high = grid.score_range
    t = min(max((cell.score - low) / (high - low), 0.0), 1.0)
    t = t if grid.better == "max" else 1.0 - t  # green is good either way
    r, g, b = unlabel_rgb(sample_colorscale(GOOD_TO_BAD, [t])[0])
    return f"rgba({int(r)},{int(g)},{int(b)},0.38)"


def _cell_html(cell: GridCell, grid: AnswerGrid) -> str:
    esc = html.escape
    if cell.error:
        body = f'<span style="color:#b00020">error: {esc(shorten(cell.error, ANSWER_CHARS))}</span>'
        full = cell.error
    else:
        full = cell.answer or ""
        body = esc(shorten(full, ANSWER_CHARS)) if full else '<span style="color:#777">(empty answer)</span>'
    verdict = {True: "pass", False: "fail", None: "unscored"}[cell.passed]
    score = f'<div style="font-size:11px;color:#333;margin-top:3px"><b>{fmt(cell.score)}</b> · {verdict}</div>'
    return (f'<td class="wb-cell" title="{esc(full)}" style="background:{_background(cell, grid)};padding:6px 8px;'
            f'vertical-align:top;border-bottom:1px solid #ddd;border-left:1px solid #eee;min-width:150px">{body}{score}</td>')


def grid_html(grid: AnswerGrid, max_rows: int = MAX_ROWS) -> str:
    """The grid as one HTML table with a sticky header (variants) and a sticky first column (questions)."""
    esc = html.escape
    head_style = "position:sticky;top:0;background:#f5f5f5;padding:6px 8px;border-bottom:2px solid #bbb;text-align:left;z-index:1"
    heads = "".join(f'<th title="{esc(full)}" style="{head_style}">{esc(short)}</th>'
                    for short, full in zip(grid.labels, grid.full_labels))
    body = []
    for row in grid.rows[:max_rows]:
        refs = f'<div style="color:#555;font-size:11px;margin-top:3px">reference: {esc("; ".join(row.references))}</div>' if row.references else ""
        question = (f'<td class="wb-question" style="position:sticky;left:0;background:#fff;padding:6px 8px;vertical-align:top;'
                    f'border-bottom:1px solid #ddd;min-width:220px;max-width:340px"><b>{esc(row.question)}</b>'
                    f'<div style="color:#777;font-size:11px">{esc(row.question_id)}</div>{refs}</td>')
        body.append(f'<tr data-question="{esc(row.question_id)}">{question}{"".join(_cell_html(c, grid) for c in row.cells)}</tr>')
    sense = "≥" if grid.better == "max" else "≤"
    note = (f'{len(grid.rows)} of {grid.total} questions shown ({_SHOW_LABELS[grid.show]}) · {grid.failing} with a failure · '
            f'{grid.dividing} where variants disagree · a cell passes when {esc(grid.metric)} {sense} {fmt(grid.pass_at)} '
            '· hover a cell for the whole answer')
    if len(grid.rows) > max_rows:
        note += f" · the first {max_rows} rows are drawn"
    if not grid.rows:
        return f'<div class="wb-grid-note" style="color:#555">{note}</div><div style="color:#555">(no question matches)</div>'
    return (f'<div class="wb-grid-note" style="color:#555;font-size:12px;margin:2px 0 6px">{note}</div>'
            '<div style="max-height:640px;overflow:auto;border:1px solid #ddd">'
            '<table class="wb-answer-grid" style="border-collapse:separate;border-spacing:0;font-size:12.5px;width:100%">'
            f'<thead><tr><th style="{head_style};left:0;z-index:2">question</th>{heads}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


class AnswerGridView:
    """Metric, filter and pass mark above the grid; `update(questions, labels, metrics)` fills it."""

    def __init__(self) -> None:
        self.questions = None
        self.labels: Any = None
        self.metric = W.Dropdown(options=["f1"], value="f1", description="metric")
        self.show = W.ToggleButtons(options=[(_SHOW_LABELS[s], s) for s in SHOWS], value="all")
        self.pass_at = W.FloatText(value=0.5, step=0.05, description="pass at", layout=W.Layout(width="160px"))
        self.grid = None
        self.html = W.HTML()
        for control in (self.metric, self.show, self.pass_at):
            control.observe(lambda _: self.draw(), "value")
        self.widget = W.VBox([W.HBox([self.metric, self.pass_at, self.show]), self.html], layout=W.Layout(width="100%"))

    def update(self, questions, labels, metrics: list[str], default: str = "f1") -> None:
        self.questions, self.labels = None, labels  # draw once, after the metric has its new options
        set_options(self.metric, metrics, default)
        self.questions = questions
        self.draw()

    def draw(self) -> None:
        if self.questions is None or self.metric.value is None:
            return
        try:
            self.grid = answer_grid(self.questions, self.metric.value, self.show.value, self.pass_at.value, self.labels)
            self.html.value = grid_html(self.grid)
        except WorkbenchError as exc:
            self.grid = None
            self.html.value = message(str(exc), "error")
