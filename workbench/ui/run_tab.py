"""Run tab: Run / Cancel, the run options (Resume, No cache: `run_sweep`'s `resume=` and `no_cache=`), one
progress bar for the current sweep (an Output cleared at each start), and a live per-variant table fed by `on_cell`.

The tab only shows things; `Workbench.run` starts `run_sweep` in a thread and calls `started`,
`cell` and `finished` here. Widget updates from that thread sync over comms (ipywidgets 8); the
table is re-rendered at most every `REFRESH_S` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import ipywidgets as W
import pandas as pd

from workbench.runner.progress import CallRate
from workbench.scoring.aggregate import aggregate
from workbench.spec_budget import BudgetConfig
from workbench.spec_search import SearchConfig
from workbench.ui.budget_view import BudgetView
from workbench.ui.common import message, table_html
from workbench.ui.search_view import SearchView

REFRESH_S = 0.5
LIVE_COLUMNS = ("f1", "exact_match", "hit_at_k", "latency_total_p50_s")


class SweepProgress:
    """One sweep's bar and label."""

    def __init__(self, name: str) -> None:
        self.bar = W.IntProgress(value=0, min=0, max=1, description=name[:20], bar_style="info")
        self.label = W.Label("starting: loading data, starting the model server…")
        self.widget = W.HBox([self.bar, self.label])
        self.calls = CallRate()  # model calls only: cached cells are not calls

    def set_total(self, total: int) -> None:
        self.bar.max = max(total, 1)
        self.label.value = f"0 / {total} cells"

    def advance(self, row: dict[str, Any] | None = None) -> None:
        if row is not None:
            self.calls.add(row)
        self.bar.value = min(self.bar.value + 1, self.bar.max)
        self.label.value = f"{self.bar.value} / {self.bar.max} cells{self.calls.text()}"

    def finish(self, status: str) -> None:
        self.bar.bar_style = {"FINISHED": "success", "KILLED": "warning"}.get(status, "danger")
        self.label.value = f"{self.label.value} — {status}"


class RunTab:
    def __init__(self, name: str, experiment: str | None, on_run: Callable[[], Any], on_cancel: Callable[[], Any],
                 tracking_uri: str = "", search: SearchConfig | None = None, budget: BudgetConfig | None = None) -> None:
        self.name = W.Text(value=name, description="sweep name")
        self.experiment = W.Text(value=experiment or "", description="experiment", placeholder="(default: the sweep name)")
        self.tracking_uri = W.Text(
            value=tracking_uri, description="tracking URI", placeholder="sqlite:///mlruns/mlflow.db or http://host:5000",
            tooltip="The MLflow tracking URI runs are logged to and sweeps are loaded from",
            layout=W.Layout(width="45%"), style={"description_width": "initial"},
        )
        self.run_button = W.Button(description="Run", icon="play", button_style="success")
        self.cancel_button = W.Button(description="Cancel", icon="stop", button_style="warning", disabled=True)
        self.run_button.on_click(lambda _: on_run())
        self.cancel_button.on_click(lambda _: on_cancel())
        # run_sweep's options; the row takes more (options_row.children) without changing anything else
        self.resume = W.Checkbox(
            value=True, description="Resume", indent=False, layout=W.Layout(width="auto"),
            tooltip="Finish an earlier cancelled run of this same spec, or return it as is if it finished; "
            "untick to start a new sweep (cached answers are still used)",
        )
        self.no_cache = W.Checkbox(
            value=False, description="No cache", indent=False, layout=W.Layout(width="auto"),
            tooltip="Call the models even for answers the cache holds (and never return a finished sweep as is)",
        )
        # run_sweep(remeasure_latency=N): latencies of cached answers were measured in earlier runs
        self.retime = W.BoundedIntText(value=0, min=0, max=1_000_000, description="re-time N questions",
                                       tooltip="re-time N questions per variant past the generation cache, so "
                                       "latencies compare like for like (0: off)",
                                       style={"description_width": "initial"}, layout=W.Layout(width="260px"))
        self.options_row = W.HBox([self.resume, self.no_cache, self.retime])
        self.search = SearchView(search)  # strategy control, rung progress and the search's figure
        self.budget = BudgetView(budget)  # max USD / calls / wall, and the estimate beside them
        self.problem = W.HTML()  # why Run is disabled (the spec does not validate)
        self.status = W.HTML()
        self.progress_output = W.Output()  # holds the current sweep's bar only
        self.table = W.HTML()
        self.progress: SweepProgress | None = None

        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._labels: dict[str, str] = {}
        self._last_refresh = 0.0

        self.widget = W.VBox(
            [
                W.HBox([self.name, self.experiment]),
                self.tracking_uri,
                W.HBox([self.run_button, self.cancel_button]),
                self.options_row,
                self.budget.widget,
                self.problem,
                self.status,
                self.progress_output,
                self.search.widget,
                W.HTML("<b>Live results</b> (per variant, so far)"),
                self.table,
            ]
        )

    @property
    def inputs(self) -> list[W.Widget]:
        """The widgets whose value is part of the spec (the app observes them)."""
        return [self.name, self.experiment, self.tracking_uri, *self.search.inputs, *self.budget.inputs]

    @property
    def run_options(self) -> dict[str, Any]:
        """Keyword arguments for run_sweep set in this tab."""
        return {"resume": self.resume.value, "no_cache": self.no_cache.value,
                "remeasure_latency": int(self.retime.value)}

    def set_problem(self, error: Exception | None) -> None:
        self.problem.value = message(f"cannot run yet: {error}", "error") if error else ""
        if error:
            self.budget.show_calls(None)  # no spec: no calls to show beside the caps
        self.run_button.disabled = error is not None or not self.cancel_button.disabled

    # ------------------------------------------------------------ called by Workbench.run

    def started(self, name: str, labels: dict[str, str]) -> SweepProgress:
        self.progress = SweepProgress(name)
        # Replaced, not stacked: the Output holds one display of this sweep's bar (its widget view).
        bundle = self.progress.widget._repr_mimebundle_()
        self.progress_output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
        with self._lock:
            self._rows, self._labels, self._last_refresh = [], dict(labels), 0.0
        self.table.value = ""
        self.search.started(labels)
        self.status.value = message("running…", "info")
        self.run_button.disabled = True
        self.cancel_button.disabled = False
        return self.progress

    def cell(self, row: dict[str, Any]) -> None:
        """on_cell callback (worker thread): cheap bar update, table at most every REFRESH_S."""
        with self._lock:  # the runner may call back from more than one thread
            self._rows.append(row)
            if self.progress is not None:
                self.progress.advance(row)
            due = time.perf_counter() - self._last_refresh >= REFRESH_S
        if due:
            self.refresh_table()

    def refresh_table(self) -> None:
        with self._lock:
            rows = list(self._rows)
            self._last_refresh = time.perf_counter()
        self.table.value = table_html(self.live_frame(rows, self._labels))

    @staticmethod
    def live_frame(rows: list[dict[str, Any]], labels: dict[str, str]) -> pd.DataFrame:
        """Per variant so far: label, n and the aggregate metrics (results.aggregate, as MLflow logs them)."""
        by_variant: dict[str, list[dict]] = {}
        for r in rows:
            by_variant.setdefault(r["variant_hash"], []).append(r)
        records = []
        for h, group in by_variant.items():
            agg = aggregate(group)
            records.append(
                {"variant": h[:12], "label": labels.get(h, h[:12]), "n": len(group), **{c: agg.get(c) for c in LIVE_COLUMNS}}
            )
        return pd.DataFrame(records)

    @property
    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows)

    def finished(self, status: str | None, text: str, kind: str) -> None:
        self.refresh_table()
        if self.progress is not None and status is not None:
            self.progress.finish(status)
        elif self.progress is not None:
            self.progress.finish("FAILED")
        self.status.value = message(text, kind)
        self.cancel_button.disabled = True
        self.run_button.disabled = bool(self.problem.value)

    def cancelling(self) -> None:
        self.status.value = message("cancelling: stopping after the current cell…", "warn")
        self.cancel_button.disabled = True
