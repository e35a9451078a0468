"""Export tab: pick a variant (or "best" under constraints via `SweepResults.best`), then
`SweepResults.export(variant, path)`; shows the Decision reason, the path and a link to the variant's run
in the MLflow UI (for a local store: the `mlflow ui` command that serves that link)."""

from __future__ import annotations

import html
import logging

import ipywidgets as W

from workbench.errors import WorkbenchError
from workbench.scoring.aggregate import quality_metrics
from workbench.tracking.links import RunLink, run_link
from workbench.ui.common import message, parse_constraints, set_options

log = logging.getLogger(__name__)

OBJECTIVE_EXTRA = ["latency_total_p95_s", "latency_total_p50_s", "cost_usd_per_1k"]


def default_export_path(name: str) -> str:
    """Where the notebooks write a sweep's winner (relative to the repository root they run from)."""
    return f"experiments/exports/{name}_winner.yaml"


def link_html(link: RunLink) -> str:
    """An <a> to the run's page; for a local store, the command that starts the UI serving it first."""
    esc = html.escape
    if link.url is None:
        return f"MLflow run <code>{esc(link.run_id)}</code> (its experiment could not be read for a link)"
    anchor = f'<a href="{esc(link.url)}" target="_blank" rel="noopener">{esc(link.url)}</a>'
    if link.served:
        return f"MLflow run <code>{esc(link.run_id)}</code>: {anchor}"
    return (f"MLflow run <code>{esc(link.run_id)}</code>: the store is a local file, no server is running; start one "
            f"with<br><code>{esc(link.command)}</code><br>then open {anchor}")


class ExportTab:
    def __init__(self, default_path: str) -> None:
        self.results = None
        self.mode = W.ToggleButtons(options=[("a variant", "variant"), ("best", "best")], value="best", description="export")
        self.variant = W.Dropdown(options=[], description="variant", layout=W.Layout(width="70%"))
        self.objective = W.Dropdown(options=["f1"], value="f1", description="objective")
        self.maximize = W.Checkbox(value=True, description="higher is better", indent=False)
        # the objective's declared direction (higher f1, lower latency) until the user says otherwise
        self.objective.observe(self._objective_changed, "value")
        self.constraints = W.Text(
            description="constraints", placeholder="latency_total_p95_s<=2, cost_usd_per_1k<=0.5", layout=W.Layout(width="70%")
        )
        self.decide_button = W.Button(description="Decide", icon="balance-scale")
        self.reason = W.HTML()
        self.path = W.Text(value=default_path, description="output path", layout=W.Layout(width="70%"))
        self.export_button = W.Button(description="Export", icon="save", button_style="primary", disabled=True)
        self.message = W.HTML()
        self.link = W.HTML()  # the exported variant's run in the MLflow UI
        self.decision = None
        self.exported_path = None

        self.decide_button.on_click(lambda _: self.decide())
        self.export_button.on_click(lambda _: self.export())
        self.mode.observe(lambda _: self._mode_changed(), "value")
        self.variant_row = W.VBox([self.variant])
        self.best_row = W.VBox([W.HBox([self.objective, self.maximize]), self.constraints, self.decide_button, self.reason])
        self.widget = W.VBox(
            [
                self.mode,
                self.variant_row,
                self.best_row,
                self.path,
                self.export_button,
                self.message,
                self.link,
            ]
        )
        self._mode_changed()

    def _objective_changed(self, change: dict) -> None:
        from workbench.scoring.aggregate import direction

        if change["new"]:
            self.maximize.value = direction(change["new"]) == "max"

    def _mode_changed(self) -> None:
        best = self.mode.value == "best"
        self.best_row.layout.display = None if best else "none"
        self.variant_row.layout.display = "none" if best else None

    def show(self, results) -> None:
        self.results = results
        frame = results.to_frame()
        done = {r["variant_hash"] for r in results.rows}
        options = [(f"{v.short_hash} {v.label()}", v.hash) for v in results.variants if v.hash in done]
        set_options(self.variant, options)
        objectives = [c for c in [*quality_metrics(results.rows), *OBJECTIVE_EXTRA] if c in frame.columns and frame[c].notna().any()]
        set_options(self.objective, objectives or ["f1"], "f1")
        self.reason.value = ""
        self.message.value = ""
        self.link.value = ""
        self.decision = None
        self.export_button.disabled = not done

    def decide(self):
        """Run `results.best` with the widgets' objective and constraints; show its reason."""
        if self.results is None:
            self.reason.value = message("no results: run or load a sweep first", "error")
            return None
        try:
            decision = self.results.best(
                self.objective.value, parse_constraints(self.constraints.value), maximize=self.maximize.value
            )
        except WorkbenchError as exc:
            self.decision = None
            self.reason.value = message(str(exc), "error")
            return None
        self.decision = decision
        label = self.results.variant(decision.winner).label()
        tied = ", ".join(f"{v} ({self.results.variant(v).label()})" for v in decision.tied)
        extra = (f"\ntied set: {tied}" if len(decision.tied) > 1 else "") + (f"\n{decision.power}" if decision.power else "")
        self.reason.value = message(f"best: {decision.winner} ({label})\n{decision.reason}{extra}", "ok")
        return decision

    def export(self):
        """Export the chosen variant; shows the path and where to see its MLflow run. Never raises."""
        self.exported_path = None
        self.link.value = ""
        if self.results is None:
            self.message.value = message("no results: run or load a sweep first", "error")
            return None
        if self.mode.value == "best":
            decision = self.decide()
            if decision is None:
                self.message.value = message("nothing exported: no best variant (see above)", "error")
                return None
            key = decision.winner
        else:
            key = self.variant.value
            if key is None:
                self.message.value = message("pick a variant to export", "error")
                return None
        path = self.path.value.strip()
        if not path:
            self.message.value = message("output path: empty; give a file name like winner.yaml", "error")
            return None
        try:
            variant = self.results.variant(key)
            written = self.results.export(variant.hash, path)
        except (WorkbenchError, KeyError, OSError) as exc:
            self.message.value = message(f"export failed: {exc}", "error")
            return None
        except Exception as exc:
            log.exception("export failed")
            self.message.value = message(f"export failed: {type(exc).__name__}: {exc}", "error")
            return None
        self.exported_path = written
        run_id = self.results.run_ids.get(variant.hash)
        from workbench.handover.export import store_uri  # the store the sweep was read from, if loaded

        self.message.value = message(f"exported variant {variant.short_hash} ({variant.label()}) to {written}", "ok")
        self.link.value = (link_html(run_link(store_uri(self.results), run_id)) if run_id
                           else "no MLflow run for this variant (tracking disabled)")
        return written
