"""`Workbench`: the notebook face. An API object owns the state and creates its widget lazily
(the jupyter-scatter way); tests drive the widgets from Python and check their traits.

    from workbench.ui import Workbench
    wb = Workbench("experiments/quickstart.yaml")
    wb                      # the tabs: Data, Variants, Run, Results, Export, Monitor
    wb.spec()               # the SweepSpec the widgets describe
    wb.run()                # same as the Run button: run_sweep in a background thread
    wb.results              # SweepResults of the last finished / cancelled / loaded sweep
    wb.status.text          # the one line saying what is shown and whether the widgets' spec matches it

The widgets only build configs (`spec()`) and call the Python API the CLI uses: `run_sweep`,
`load_sweep`, `load_corpus`/`load_eval`, `SweepResults.best`/`export`, `workbench.analysis.plots`, `monitor`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import ipywidgets as W

from workbench.spec import (
    CorpusSource,
    DataConfig,
    EmbeddingConfig,
    EvalSource,
    ModelConfig,
    SweepSpec,
    load_spec,
)
from workbench.errors import ConfigError, WorkbenchError
from workbench.ui.common import widget_wording
from workbench.ui.data_tab import DataTab
from workbench.ui.estimate_view import EstimateView
from workbench.ui.export_tab import ExportTab, default_export_path
from workbench.ui.monitor_tab import MonitorTab
from workbench.ui.results_tab import ResultsTab
from workbench.ui.run_tab import RunTab
from workbench.ui.status import StatusLine, origin
from workbench.ui.variants_tab import VariantsTab

if TYPE_CHECKING:
    from workbench.tracking import Tracker

log = logging.getLogger(__name__)

TABS = ("Data", "Variants", "Run", "Results", "Export", "Monitor")
DEFAULT_DATA = "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"


def default_spec() -> SweepSpec:
    """What `Workbench()` starts from: the quickstart data and the default variant."""
    return SweepSpec(
        name="workbench",
        data=DataConfig(
            corpus=CorpusSource(format="squad", path=DEFAULT_DATA),
            eval=EvalSource(format="squad", path=DEFAULT_DATA, limit=20),
        ),
    )


class Workbench:
    """Build, run, compare and export RAG sweeps from a notebook.

    spec: a YAML path, a dict or a SweepSpec to start from (None: the quickstart data, default variant).
    tracking_uri: overrides the spec's MLflow tracking URI (the Run tab's "tracking URI" field starts with it).
    endpoints: ModelConfig / EmbeddingConfig entries offered as extra checkboxes in the Variants tab.
    tracker: log runs to and load sweeps from this Tracker instead of the spec's MLflow store.
    """

    def __init__(
        self,
        spec: str | Path | dict | SweepSpec | None = None,
        *,
        tracking_uri: str | None = None,
        endpoints: Sequence[ModelConfig | EmbeddingConfig] = (),
        tracker: Tracker | None = None,
    ) -> None:
        self._base = load_spec(spec) if spec is not None else default_spec()
        bad = [e for e in endpoints if not isinstance(e, (ModelConfig, EmbeddingConfig))]
        if bad:
            raise ConfigError(f"endpoints: expected ModelConfig or EmbeddingConfig entries, got {type(bad[0]).__name__}")
        self._tracking_uri = tracking_uri
        self._endpoints = tuple(endpoints)
        self._tracker = tracker
        # the call count's inputs, loaded once per source and recounted only when something changed
        self._corpus_memo: tuple[Any, Any] | None = None  # (CorpusSource, Corpus)
        self._questions_memo: tuple[Any, list[tuple[str, str]]] | None = None  # ((EvalSource, digest), questions)
        self._count_memo: tuple[Any, Any] | None = None
        self._widget: W.Tab | None = None
        self._thread: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self.results = None  # SweepResults of the last finished / cancelled run or loaded sweep
        self.error: Exception | None = None  # what made the last run fail, if it did

    # ------------------------------------------------------------ the widget (lazy)

    @property
    def widget(self) -> W.Tab:
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def _build(self) -> W.Tab:
        base = self._base
        self._data_tab = DataTab(base.data)
        self._variants_tab = VariantsTab(base.space, stage=base.stage, endpoints=self._endpoints, repeats=base.repeats)
        self._run_tab = RunTab(base.name, base.experiment, on_run=self._on_run_click, on_cancel=self.cancel,
                               tracking_uri=self._tracking_uri or base.tracking.tracking_uri, search=base.search,
                               budget=base.budget)
        self._results_tab = ResultsTab(on_load=self._on_load_click)
        self._export_tab = ExportTab(default_path=default_export_path(base.name))
        self._monitor_tab = MonitorTab(self._tracking_uri or base.tracking.tracking_uri)
        self._status = StatusLine()
        self._estimate_view = EstimateView()  # tokens, USD and wall under the Variants tab's count
        self._variants_tab.widget.children += (self._estimate_view.widget,)
        self._estimate_view.listeners.append(self._run_tab.budget.show_estimate)  # shown beside the budget too
        # One status widget atop every tab (one model, several views): what is shown is always in sight.
        tab = W.Tab(
            children=[
                W.VBox([self._status.widget, t.widget]) for t in (self._data_tab, self._variants_tab, self._run_tab,
                                                                  self._results_tab, self._export_tab, self._monitor_tab)
            ],
            titles=TABS,
        )
        for w in (*self._data_tab.inputs, *self._run_tab.inputs, self._run_tab.no_cache):
            w.observe(self._refresh, "value")
        self._variants_tab.on_change(self._refresh)
        self._data_tab.on_loaded(self._refresh)
        self._widget = tab
        self._refresh()
        return tab

    # The tabs (each owns its widgets); asking for one builds the widget.
    def _built(self) -> "Workbench":
        _ = self.widget
        return self

    @property
    def data_tab(self) -> DataTab: return self._built()._data_tab  # noqa: E704
    @property
    def variants_tab(self) -> VariantsTab: return self._built()._variants_tab  # noqa: E704
    @property
    def estimate_view(self) -> EstimateView: return self._built()._estimate_view  # noqa: E704
    @property
    def run_tab(self) -> RunTab: return self._built()._run_tab  # noqa: E704
    @property
    def results_tab(self) -> ResultsTab: return self._built()._results_tab  # noqa: E704
    @property
    def export_tab(self) -> ExportTab: return self._built()._export_tab  # noqa: E704
    @property
    def monitor_tab(self) -> MonitorTab: return self._built()._monitor_tab  # noqa: E704
    @property
    def status(self) -> StatusLine: return self._built()._status  # noqa: E704

    def select(self, name: str) -> None:
        self.widget.selected_index = TABS.index(name)

    # ------------------------------------------------------------ widgets -> spec

    def spec(self) -> SweepSpec:
        """The SweepSpec the widgets describe; ConfigError (naming the field) if they do not validate."""
        _ = self.widget
        data = self.data_tab.data()
        space = self.variants_tab.space()
        base = self._base
        tracking = base.tracking.model_dump(mode="json")
        tracking["tracking_uri"] = self.run_tab.tracking_uri.value.strip()
        if not tracking["tracking_uri"]:
            raise ConfigError("tracking URI (Run tab): empty; give an MLflow tracking URI such as "
                              "sqlite:///mlruns/mlflow.db or http://host:5000")
        name = self.run_tab.name.value.strip()
        experiment = self.run_tab.experiment.value.strip() or None
        return load_spec(
            {
                **base.model_dump(mode="json", exclude={"space", "data", "tracking", "name", "experiment", "repeats"}),
                "name": name,
                "experiment": experiment,
                "data": data.model_dump(mode="json"),
                "space": space,
                "repeats": self.variants_tab.repeats(),
                "tracking": tracking,
                "search": self.run_tab.search.section(),
                "budget": self.run_tab.budget.section(),  # the same BudgetConfig `workbench run --max-*` sets
            }
        )

    def _refresh(self, *_: Any) -> None:
        """After any change: re-validate, update the call count, whether Run is possible and the status line."""
        try:
            self.variants_tab.space()
        except ConfigError as exc:
            self.variants_tab.show_error(exc)
        else:
            self.variants_tab.show_error(None)
        try:
            spec = self.spec()
        except ConfigError as exc:
            self.variants_tab.show_count(None, None)
            self.estimate_view.update(None)
            self.run_tab.set_problem(exc)
            self.status.render(None, "fix the message in the Variants or Run tab")
            return
        data = self._questions(spec.data)  # the questions the sweep will use, when its files load
        questions = len(data[1]) if data is not None else self.data_tab.question_count()
        count = self.call_count(spec)
        self.variants_tab.show_count(len(spec.variants()), questions, count)
        self.run_tab.budget.show_calls(count)
        no_cache = {"execution": spec.execution.model_copy(update={"cache": False})} if self.run_tab.no_cache.value else {}
        # the estimate does not depend on the caps: a new cap is not a new estimate
        self.estimate_view.update(spec.model_copy(update={**no_cache, "budget": type(spec.budget)()}))
        self.run_tab.set_problem(None)
        self.status.render(spec)

    def call_count(self, spec: SweepSpec | None = None):
        """The spec's model calls split into new and cached (`workbench.runner.estimate.count_calls`), with
        the No cache box applied; None when its data cannot be loaded (the Run tab then says why)."""
        from workbench.runner.estimate import count_calls, records_signature

        spec = spec if spec is not None else self.spec()
        if self.run_tab.no_cache.value:
            spec = spec.model_copy(update={"execution": spec.execution.model_copy(update={"cache": False})})
        data = self._questions(spec.data)
        if data is None:
            return None
        key = (spec.hash, records_signature(Path(spec.home)))  # recounted only when the spec or a record changed
        if self._count_memo is None or self._count_memo[0] != key:
            self._count_memo = (key, count_calls(spec, *data))
        return self._count_memo[1]

    def _questions(self, data: DataConfig):
        """(corpus digest, [(question id, question)]) of the widgets' data, loaded once per source."""
        from workbench.data.corpus import load_corpus
        from workbench.data.evalset import load_eval

        try:
            if self._corpus_memo is None or self._corpus_memo[0] != data.corpus:
                self._corpus_memo = (data.corpus, load_corpus(data.corpus))
            corpus = self._corpus_memo[1]
            key = (data.eval, corpus.digest)
            if self._questions_memo is None or self._questions_memo[0] != key:
                self._questions_memo = (key, [(i.id, i.question) for i in load_eval(data.eval, corpus).items])
            return corpus.digest, self._questions_memo[1]
        except WorkbenchError:
            return None

    def _tracking(self) -> str:
        try:
            return self.spec().tracking.tracking_uri
        except ConfigError:
            return self.run_tab.tracking_uri.value.strip() or self._base.tracking.tracking_uri

    # ------------------------------------------------------------ run

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, block: bool = False) -> threading.Thread:
        """Run the widgets' spec with `run_sweep` in a background thread (the Run button does the same).

        Raises ConfigError if the spec does not validate; `block=True` waits for the end.
        """
        _ = self.widget
        if self.running:
            raise WorkbenchError("a sweep is already running: wait for it or cancel it")
        spec = self.spec()
        options = self.run_tab.run_options
        self.error = None
        self._cancel = threading.Event()
        progress = self.run_tab.started(spec.name, {v.hash: v.label() for v in spec.variants()})
        self.results_tab.show_message("", "info")  # an earlier load's message is stale now
        self.status.running(spec.name)
        self._refresh()
        self._thread = threading.Thread(
            target=self._worker, args=(spec, self._cancel, progress, options), name=f"workbench-sweep-{spec.name}",
            daemon=True,
        )
        self._thread.start()
        if block:
            self._thread.join()
        return self._thread

    def cancel(self) -> None:
        """Stop after the current cell; finished cells are kept and logged (MLflow status KILLED)."""
        if self._cancel is not None and self.running:
            self._cancel.set()
            self.run_tab.cancelling()

    def _on_run_click(self) -> None:
        try:
            self.run()
        except WorkbenchError as exc:
            self.run_tab.status.value = self._msg(f"cannot run: {widget_wording(str(exc))}", "error")

    def _worker(self, spec: SweepSpec, cancel: threading.Event, progress, options: dict[str, Any]) -> None:
        try:
            self._run_sweep(spec, cancel, progress, options)
        finally:
            self.status.running(None)
            self._refresh()  # the status line and the new-vs-cached count (the caches grew)

    def _run_sweep(self, spec: SweepSpec, cancel: threading.Event, progress, options: dict[str, Any]) -> None:
        from workbench.runner.sweep import run_sweep

        try:
            results = run_sweep(spec, progress=False, on_cell=self.run_tab.cell, cancel=cancel,
                                on_start=lambda info: progress.set_total(info["total_cells"]),
                                on_search=self.run_tab.search.rung, tracker=self._tracker, **options)
        except WorkbenchError as exc:
            self.error = exc
            self.run_tab.finished(None, f"the sweep failed: {widget_wording(str(exc))}", "error")
            return
        except Exception as exc:  # shown in the tab, logged with its traceback for a bug report
            log.exception("sweep failed")
            self.error = exc
            self.run_tab.finished(None, f"the sweep failed unexpectedly: {type(exc).__name__}: {exc}", "error")
            return
        self.results = results
        self.status.shown(results)
        uri = spec.tracking.tracking_uri
        lines = [
            f"sweep {results.sweep_id}: {results.status} — {len(results.rows)} cells, "
            f"{len({r['variant_hash'] for r in results.rows})} of {len(results.variants)} variants"
            + (f" in {results.wall_s:.1f} s" if results.wall_s else ""),
        ]
        lines += [n for n in results.notes if n.startswith("stopped by budget")]
        how = origin(results, None)
        if how != "run now":
            lines.append(how)
        if results.parent_run_id:
            lines.append(f"MLflow parent run {results.parent_run_id} at {uri}")
            if not uri.startswith(("http://", "https://")):  # a local store: no server until one is started
                from workbench.tracking.links import ui_command

                lines.append(f"open it with: {ui_command(uri)}")
        self.run_tab.finished(results.status, "\n".join(lines), "ok" if results.status == "FINISHED" else "warn")
        self.run_tab.search.finished(results.search)
        self._show_results(results)

    # ------------------------------------------------------------ results

    def load(self, sweep_id: str):
        """Load an earlier sweep from MLflow into the Results and Export tabs (nothing is re-run)."""
        from workbench.analysis.load import load_sweep

        _ = self.widget
        if not sweep_id:
            raise ConfigError("sweep id: empty; give the id of an earlier sweep (the status line shows it; "
                              "`workbench run` prints it), e.g. 20261127-025350-17646e")
        where = "the given tracker" if self._tracker is not None else self._tracking()
        results = load_sweep(sweep_id, self._tracking(), tracker=self._tracker)
        self.results = results
        self.status.shown(results, loaded_from=where)
        self._show_results(results)
        self._refresh()  # the status line says what is shown now
        self.select("Results")
        return results

    def _on_load_click(self, sweep_id: str) -> None:
        try:
            self.load(sweep_id)
        except WorkbenchError as exc:
            self.results_tab.show_message(widget_wording(str(exc)), "error")
        except Exception as exc:
            log.exception("loading sweep failed")
            self.results_tab.show_message(f"loading failed: {type(exc).__name__}: {exc}", "error")

    def _show_results(self, results) -> None:
        self.results_tab.show_message("", "info")  # a message about earlier results is stale
        for tab in (self.results_tab, self.export_tab):
            try:
                tab.show(results)
            except Exception as exc:  # one view failing must not hide the others
                log.exception("showing results failed")
                self.results_tab.show_message(f"showing results failed: {type(exc).__name__}: {exc}", "error")

    @staticmethod
    def _msg(text: str, kind: str) -> str:
        from workbench.ui.common import message

        return message(text, kind)
