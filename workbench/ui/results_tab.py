"""Results tab: the comparison figures from `workbench.analysis.plots` and a per-question drill-down.

Pareto (quality vs latency p95 or cost per 1k, both chosen in dropdowns), mean-with-CI bars, the
question heat map, and: pick a variant and a question → question, retrieved contexts with their
document ids, answer, reference answers and scores. A sweep id + "Load sweep" fills the view from
MLflow (`workbench.analysis.load.load_sweep`) without re-running anything.
"""

from __future__ import annotations

import html
import logging
import math
from typing import Any, Callable

import ipywidgets as W

from workbench.errors import WorkbenchError
from workbench.scoring.catalogue import quality_metrics
from workbench.scoring.cell import MEASURES
from workbench.ui.common import FigureView, fmt, message, set_options

log = logging.getLogger(__name__)

X_AXES = [("latency p95 (s)", "latency_total_p95_s"), ("cost per 1k questions (USD)", "cost_usd_per_1k")]
_SCORE_EXTRA = tuple(MEASURES)  # shown after the scores in the drill-down


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class ResultsTab:
    def __init__(self, on_load: Callable[[str], Any]) -> None:
        self.results = None
        self._filling = False
        self.sweep_id = W.Text(description="sweep id", placeholder="e.g. 20261127-025350-17646e")
        self.load_button = W.Button(description="Load sweep", icon="download")
        self.load_button.on_click(lambda _: on_load(self.sweep_id.value.strip()))
        self.message = W.HTML()
        self.summary = W.HTML('<span style="color:#555">No results yet: run a sweep or load one.</span>')

        self.quality = W.Dropdown(options=["f1"], value="f1", description="quality")
        self.x_axis = W.Dropdown(options=X_AXES, value="latency_total_p95_s", description="x axis")
        self.pareto = FigureView()
        self.bars = FigureView()
        self.heatmap = FigureView()
        self.quality.observe(lambda _: self._draw(), "value")
        self.x_axis.observe(lambda _: self._draw_pareto(), "value")

        self.variant = W.Dropdown(options=[], description="variant", layout=W.Layout(width="70%"))
        self.question = W.Dropdown(options=[], description="question", layout=W.Layout(width="70%"))
        self.detail = W.HTML()
        self.variant.observe(lambda _: self._show_detail(), "value")
        self.question.observe(lambda _: self._show_detail(), "value")

        self.widget = W.VBox(
            [
                W.HBox([self.sweep_id, self.load_button]),
                self.message,
                self.summary,
                W.HBox([self.quality, self.x_axis]),
                self.pareto.widget,
                self.bars.widget,
                self.heatmap.widget,
                W.HTML("<b>Per question</b>"),
                self.variant,
                self.question,
                self.detail,
            ]
        )

    # ------------------------------------------------------------ fill

    def show(self, results) -> None:
        """Fill every view from a SweepResults (a finished, cancelled or loaded sweep)."""
        self.results = results
        self.sweep_id.value = results.sweep_id
        frame = results.to_frame()
        metrics = [
            m for m in quality_metrics(results.rows) if m in frame.columns and frame[m].notna().any()
        ] or quality_metrics([])[:1]
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in results.notes)
        self.summary.value = (
            f"<b>sweep {html.escape(results.sweep_id)}</b> · {html.escape(str(results.status))} · "
            f"{len(results.variants)} variants · {len(results.rows)} cells"
            + (f" · {results.wall_s:.1f} s" if results.wall_s else "")
            + (f"<ul>{notes}</ul>" if notes else "")
        )
        self._filling = True  # draw once, after every dropdown has its new options
        try:
            set_options(self.quality, metrics, "f1")
            done = {r["variant_hash"] for r in results.rows}
            questions = list({r["question_id"]: r["question"] for r in results.rows}.items())
            set_options(self.variant, [(v.label(), v.hash) for v in results.variants if v.hash in done])
            set_options(self.question, [(f"{qid}: {q[:80]}", qid) for qid, q in questions])
        finally:
            self._filling = False
        self._draw()
        self._show_detail()

    def _draw(self) -> None:
        if self.results is None or self._filling:
            return
        self._draw_pareto()
        if self.results is None:
            return
        from workbench.analysis.plots import plot_metric_bars, plot_question_heatmap

        frame, questions = self.results.to_frame(), self.results.questions()
        self._try(self.bars, lambda: plot_metric_bars(frame))
        self._try(self.heatmap, lambda: plot_question_heatmap(questions, self.quality.value))

    def _draw_pareto(self) -> None:
        if self.results is None or self._filling:
            return
        from workbench.analysis.plots import plot_pareto

        frame = self.results.to_frame()
        self._try(self.pareto, lambda: plot_pareto(frame, quality=self.quality.value, x=self.x_axis.value))

    @staticmethod
    def _try(view: FigureView, make: Callable) -> None:
        try:
            view.show(make())
        except WorkbenchError as exc:
            view.fail(str(exc))
        except Exception as exc:  # a figure that cannot be drawn must not break the tab
            log.exception("figure failed")
            view.fail(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ drill-down

    def selected_row(self) -> dict[str, Any] | None:
        if self.results is None or self.variant.value is None or self.question.value is None:
            return None
        return next(
            (r for r in self.results.rows if r["variant_hash"] == self.variant.value and r["question_id"] == self.question.value),
            None,
        )

    def _show_detail(self) -> None:
        if self._filling:
            return
        row = self.selected_row()
        if row is None:
            self.detail.value = ""
            return
        esc = lambda v: html.escape(str(v))  # noqa: E731
        contexts = row.get("contexts") or []
        # live rows carry each chunk's document id; rows loaded from MLflow carry chunk ids "<doc id>#<n>"
        ids = row.get("retrieved_chunk_doc_ids") or row.get("retrieved_chunk_ids") or [""] * len(contexts)
        ctx = "".join(
            f'<li><code>{esc(doc)}</code><div style="white-space:pre-wrap;color:#333">{esc(text)}</div></li>'
            for doc, text in zip(ids, contexts)
        )
        error = row.get("error")
        answer = f'<span style="color:#b00020">error: {esc(error)}</span>' if error else esc(row.get("answer", "–"))
        refs = ", ".join(f"<q>{esc(a)}</q>" for a in row.get("reference_answers") or []) or "–"
        names = [*quality_metrics([row]), *_SCORE_EXTRA]
        scores = " · ".join(f"{n} <b>{fmt(row.get(n))}</b>" for n in names if _present(row.get(n)))
        self.detail.value = (
            f"<div><b>Question</b> ({esc(row['question_id'])}): {esc(row.get('question', ''))}</div>"
            f"<div><b>Answer</b>: {answer}</div>"
            f"<div><b>Reference answers</b>: {refs}</div>"
            f"<div><b>Scores</b>: {scores or '–'}</div>"
            f"<div><b>Retrieved contexts</b> (relevant: {esc(', '.join(row.get('relevant_ids') or []) or '–')})"
            f"<ol>{ctx}</ol></div>"
        )

    def show_message(self, text: str, kind: str) -> None:
        self.message.value = message(text, kind)
