"""Results tab: the variants table, the comparison figures, the answer grid and a per-question drill-down.

Top to bottom: the sweep (id + "Load sweep" fills the view from MLflow via `load_sweep`, nothing re-runs),
a sortable table of the variants with each column's best marked (`analysis.leaderboard`), Pareto (quality
vs latency p95 or cost per 1k), one bar panel per metric, the question heat map, the answers side by side
(`analysis.answer_grid`), and the drill-down: question, retrieved contexts with their document ids,
answer, reference answers and scores. Clicking a Pareto point or a bar opens that variant in the
drill-down; clicking a heat-map cell opens that variant and question.
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
from workbench.ui.answer_grid_view import AnswerGridView
from workbench.ui.common import fmt, message, set_options, widget_wording
from workbench.ui.figure_view import Click, FigureView

log = logging.getLogger(__name__)

X_AXES = [("latency p95 (s)", "latency_total_p95_s"), ("cost per 1k questions (USD)", "cost_usd_per_1k")]
_SCORE_EXTRA = tuple(MEASURES)  # shown after the scores in the drill-down


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _heading(text: str) -> W.HTML:
    return W.HTML(f'<h4 style="margin:14px 0 4px 0">{html.escape(text)}</h4>')


class ResultsTab:
    def __init__(self, on_load: Callable[[str], Any]) -> None:
        self.results = None
        self.heat_info = None  # the drawn heat map's HeatmapInfo: maps a clicked cell to (variant, question)
        self._filling = False
        self.sweep_id = W.Text(description="sweep id", placeholder="e.g. 20261127-025350-17646e")
        self.load_button = W.Button(description="Load sweep", icon="download")
        self.load_button.on_click(lambda _: on_load(self.sweep_id.value.strip()))
        self.message = W.HTML()
        self.summary = W.HTML('<span style="color:#555">No results yet: run a sweep or load one.</span>')

        self.sort_by = W.Dropdown(options=[], description="sort by")
        self.table = W.HTML()
        self.sort_by.observe(lambda _: self._draw_table(), "value")
        self.quality = W.Dropdown(options=["f1"], value="f1", description="quality")
        self.x_axis = W.Dropdown(options=X_AXES, value="latency_total_p95_s", description="x axis")
        self.pareto = FigureView(on_click=lambda c: self.open(c.customdata))
        self.bars = FigureView(on_click=lambda c: self.open(c.customdata))
        self.heatmap = FigureView(on_click=self._heat_clicked)
        self.variance = FigureView(on_click=lambda c: self.open(c.customdata))  # only with repeats
        self.variance.widget.layout.display = "none"
        self.quality.observe(lambda _: self._draw(), "value")
        self.x_axis.observe(lambda _: self._draw_pareto(), "value")
        self.answers = AnswerGridView()

        self.variant = W.Dropdown(options=[], description="variant", layout=W.Layout(width="70%"))
        self.question = W.Dropdown(options=[], description="question", layout=W.Layout(width="70%"))
        self.detail = W.HTML()
        from workbench.ui.label_panel import LabelPanel

        self.labelling = LabelPanel(self)
        self.variant.observe(lambda _: self._show_detail(), "value")
        self.question.observe(lambda _: self._show_detail(), "value")

        hint = W.HTML('<span style="color:#555">Click a point, a bar or a heat-map cell to open it in '
                      '<i>Per question</i> at the bottom.</span>')
        self.widget = W.VBox(
            [
                W.HBox([self.sweep_id, self.load_button]),
                self.message,
                self.summary,
                _heading("Variants"),
                self.sort_by,
                self.table,
                _heading("Figures"),
                W.HBox([self.quality, self.x_axis]),
                hint,
                self.pareto.widget,
                self.bars.widget,
                self.heatmap.widget,
                self.variance.widget,
                _heading("Answers side by side"),
                self.answers.widget,
                _heading("Per question"),
                self.variant,
                self.question,
                self.detail,
                self.labelling.widget,
            ],
            layout=W.Layout(width="100%"),
        )

    # ------------------------------------------------------------ fill

    def show(self, results) -> None:
        """Fill every view from a SweepResults (a finished, cancelled or loaded sweep)."""
        from workbench.analysis.leaderboard import default_columns
        from workbench.analysis.plots import short_labels

        self.results = results
        self.sweep_id.value = results.sweep_id
        frame = results.to_frame()
        metrics = [
            m for m in quality_metrics(results.rows) if m in frame.columns and frame[m].notna().any()
        ] or quality_metrics([])[:1]
        # a latency comparison that mixes runs is said here too (a loaded sweep's notes may not carry it)
        latency = results.latency_warning()
        shown = [*results.notes, *([latency] if latency and latency not in results.notes else [])]
        judge = self._judge_warning(results)
        shown += [judge] if judge else []
        notes = "".join(f"<li>{html.escape(widget_wording(n))}</li>" for n in shown)
        self.summary.value = (
            f"<b>sweep {html.escape(results.sweep_id)}</b> · {html.escape(str(results.status))} · "
            f"{len(results.variants)} variants · {len(results.rows)} cells"
            + (f" · {results.wall_s:.1f} s" if results.wall_s else "")
            + (f"<ul>{notes}</ul>" if notes else "")
        )
        self._filling = True  # draw once, after every dropdown has its new options
        try:
            set_options(self.quality, metrics, "f1")
            set_options(self.sort_by, default_columns(frame) if not frame.empty else [], "f1")
            done = {r["variant_hash"] for r in results.rows}
            short = short_labels({v.short_hash: v.label() for v in results.variants})
            questions = list({r["question_id"]: r["question"] for r in results.rows}.items())
            set_options(self.variant, [(f"{short[v.short_hash]} [{v.short_hash}]", v.hash) for v in results.variants if v.hash in done])
            set_options(self.question, [(f"{qid}: {q[:80]}", qid) for qid, q in questions])
        finally:
            self._filling = False
        # too few questions to tell the top two apart is said where the numbers are read
        power = results.power_warning(self.quality.value) if self.quality.value else None
        if power:
            self.summary.value += f"<div style='color:#b45309'>{html.escape(power)}</div>"
        self._draw_table()
        self._draw()
        if results.rows:
            self.answers.update(results.questions(), frame, metrics, "f1")
        self._show_detail()

    @staticmethod
    def _judge_warning(results) -> str | None:
        """Low agreement of the judge with the human labels, said where the judge's numbers are shown."""
        if not results.labels or results.spec.judge is None:
            return None
        from workbench.analysis.labelling import agreement_warning

        try:
            return agreement_warning(results.judge_agreement(log=False))
        except WorkbenchError:
            return None

    def _draw_table(self) -> None:
        if self.results is None or self._filling or self.sort_by.value is None:
            return
        from workbench.analysis.leaderboard import leaderboard
        from workbench.ui.styled_table import leaderboard_html

        try:
            self.table.value = leaderboard_html(leaderboard(self.results.to_frame(), sort_by=self.sort_by.value))
        except WorkbenchError as exc:
            self.table.value = message(str(exc), "error")

    def _draw(self) -> None:
        if self.results is None or self._filling:
            return
        self._draw_pareto()
        from workbench.analysis.plots import heatmap_figure, heatmap_info, plot_metric_bars

        frame, questions = self.results.to_frame(), self.results.questions()
        finalists = self.results.finalists().to_frame()  # a search's stopped variants answered fewer questions
        self._try(self.bars, lambda: plot_metric_bars(finalists))

        def heat():
            self.heat_info = heatmap_info(questions, self.quality.value, frame, max_questions=50)
            return heatmap_figure(self.heat_info)

        self._try(self.heatmap, heat)
        # the variance split, when the sweep repeated answers (or judge passes) to measure it
        repeated = f"{self.quality.value}_var_question" in frame.columns
        self.variance.widget.layout.display = None if repeated else "none"
        if repeated:
            from workbench.analysis.plots.variance import plot_variance_split, variance_info

            self._try(self.variance, lambda: plot_variance_split(variance_info(frame, self.quality.value)))

    def _draw_pareto(self) -> None:
        if self.results is None or self._filling:
            return
        from workbench.analysis.plots import plot_pareto

        frame = self.results.finalists().to_frame()  # never a stopped variant's mean over fewer questions
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

    # ------------------------------------------------------------ clicks

    def _heat_clicked(self, click: Click) -> None:
        if self.heat_info is not None and click.x is not None and click.y is not None:
            variant, question = self.heat_info.cell_at(click.x, click.y)
            self.open(variant, question)

    def open(self, variant: str | None, question: str | None = None) -> None:
        """Show `variant` (any unique hash prefix) and, if given, `question` in the drill-down."""
        if self.results is None or variant is None:
            return
        try:
            full = self.results.variant(str(variant)).hash
        except KeyError:
            return  # a point of a figure drawn from other results
        values = [v for _, v in self.variant.options]
        if full in values:
            self.variant.value = full
        if question is not None and question in [q for _, q in self.question.options]:
            self.question.value = question

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
        self.labelling.refresh()
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
            f'<div class="wb-detail" data-question="{esc(row["question_id"])}" data-variant="{esc(row["variant"])}">'
            f"<div><b>Question</b> ({esc(row['question_id'])}): {esc(row.get('question', ''))}</div>"
            f"<div><b>Variant</b>: {esc(self.results.variant(row['variant_hash']).label())} [{esc(row['variant'])}]</div>"
            f"<div><b>Answer</b>: {answer}</div>"
            f"<div><b>Reference answers</b>: {refs}</div>"
            f"<div><b>Scores</b>: {scores or '–'}</div>"
            f"<div><b>Retrieved contexts</b> (relevant: {esc(', '.join(row.get('relevant_ids') or []) or '–')})"
            f"<ol>{ctx}</ol></div></div>"
        )

    def show_message(self, text: str, kind: str) -> None:
        self.message.value = message(text, kind)
