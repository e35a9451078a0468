"""The Run tab's search: the strategy control (grid, random, halving, optuna and their main knobs), the
progress of a running search (rung, survivors, stopped) and its figure (variants × rungs, where each
stopped). It builds the spec's `search:` section as plain values and draws what `run_sweep(on_search=…)`
reports; no logic of its own."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from workbench.spec_search import SearchConfig
from workbench.ui.common import message
from workbench.ui.figure_view import FigureView


class SearchView:
    def __init__(self, base: SearchConfig | None = None) -> None:
        base = base or SearchConfig()
        self.base = base
        self.strategy = W.Dropdown(options=["grid", "random", "halving", "optuna"], value=base.strategy,
                                   description="search", tooltip="grid: every variant on every question; halving / "
                                   "optuna: stop weak variants early on question subsets")
        self.objective = W.Text(value=base.objective, description="objective", layout=W.Layout(width="220px"))
        self.eta = W.BoundedFloatText(value=base.eta, min=1.01, max=10, step=0.5, description="eta",
                                      tooltip="keep the top 1/eta at each rung", layout=W.Layout(width="160px"))
        self.n_trials = W.BoundedIntText(value=base.n_trials or 0, min=0, max=1_000_000, description="trials",
                                         tooltip="random / optuna: variants to try (0: half the grid)",
                                         layout=W.Layout(width="170px"))
        self.sampler = W.Dropdown(options=["tpe", "nsga2"], value=base.sampler, description="sampler",
                                  layout=W.Layout(width="180px"))
        self.progress = W.HTML()
        self.figure = FigureView()
        self.figure.widget.layout.display = "none"
        self.controls = W.HBox([self.strategy, self.objective, self.eta, self.n_trials, self.sampler])
        self.widget = W.VBox([self.controls, self.progress, self.figure.widget])
        self.strategy.observe(lambda _: self._enable(), names="value")
        self._enable()
        self.labels: dict[str, str] = {}

    @property
    def inputs(self) -> list[W.Widget]:
        return [self.strategy, self.objective, self.eta, self.n_trials, self.sampler]

    def _enable(self) -> None:
        s = self.strategy.value
        self.eta.disabled = s not in ("halving", "optuna")
        self.n_trials.disabled = s not in ("random", "optuna")
        self.sampler.disabled = s != "optuna"

    def section(self) -> dict[str, Any]:
        """The spec's `search:` section these widgets describe (the spec validates it)."""
        s = self.strategy.value
        out = {**self.base.model_dump(mode="json"), "strategy": s, "objective": self.objective.value.strip(),
               "eta": float(self.eta.value), "sampler": self.sampler.value,
               "n_trials": (int(self.n_trials.value) or None) if s in ("random", "optuna") else None}
        return out

    # ------------------------------------------------------------ a running search

    def started(self, labels: dict[str, str]) -> None:
        self.labels = dict(labels)
        self.progress.value = ""
        self.figure.widget.layout.display = "none"

    def rung(self, search: dict[str, Any]) -> None:
        """on_search (worker thread): one line per rung so far, then the figure."""
        lines = [f"rung {r['rung']}: {r['questions']} questions, {r['entered']} variants entered, "
                 f"{r['stopped']} stopped, {r['survivors']} go on" + (f" ({r['trials']} trials)" if "trials" in r else "")
                 for r in search.get("rungs", [])]
        self.progress.value = "<br>".join(html.escape(line) for line in lines)
        self.draw(search)

    def draw(self, search: dict[str, Any]) -> None:
        from workbench.analysis.plots.search import plot_search, search_info
        from workbench.errors import WorkbenchError

        if not search.get("variants"):
            return
        self.figure.widget.layout.display = ""
        try:
            self.figure.show(plot_search(search_info(search, self.labels)))
        except WorkbenchError as exc:
            self.figure.fail(str(exc))

    def finished(self, search: dict[str, Any]) -> None:
        if not search:
            return
        self.draw(search)
        if search.get("reason"):
            self.progress.value += message(f"{search['strategy']}: {search['reason']}", "info")
