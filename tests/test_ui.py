"""The ipywidgets face, driven from Python: set widget values, click buttons, check configs and calls.

The run tests are real: the local SmolLM2 server, bm25s, MLflow on sqlite, all state under tmp dirs.
"""

import html
import re
import time
from pathlib import Path

import mlflow
import pytest

from workbench.spec import ModelConfig, load_spec
from workbench.data.corpus import load_corpus
from workbench.errors import ConfigError
from workbench.ui import Workbench

from conftest import ROOT, SQUAD

QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


def text(widget) -> str:
    """What an HTML/Label widget shows, as plain text."""
    return html.unescape(re.sub(r"<[^>]+>", "", widget.value))


def is_red(widget) -> bool:
    return "wb-error" in widget.value


def quickstart_in(tmp: Path, limit: int) -> dict:
    """The quickstart spec with absolute data paths, `limit` questions and all state under `tmp`."""
    spec = load_spec(QUICKSTART).model_dump(mode="json")
    spec["data"]["corpus"]["path"] = str(SQUAD)
    spec["data"]["eval"].update(path=str(SQUAD), limit=limit)
    spec["tracking"]["artifact_location"] = str(tmp / "mlruns" / "artifacts")
    spec["home"] = str(tmp / "home")
    spec["space"]["model"][0]["max_tokens"] = 8  # short answers keep the real runs quick
    return spec


def only_bm25(wb: Workbench) -> None:
    """One variant: recursive chunking, bm25 retrieval, the spec's prompt and local model."""
    wb.variants_tab.chunking["token"].enabled.value = False
    wb.variants_tab.retrieval_kinds["dense"].value = False


def wait(thread, timeout: float = 400.0) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), "the sweep thread did not finish in time"


def count_runs(uri: str) -> int:
    mlflow.set_tracking_uri(uri)
    return len(mlflow.search_runs(search_all_experiments=True, output_format="list"))


# ---------------------------------------------------------------- building the spec


def test_quickstart_round_trips_through_the_widgets():
    wb = Workbench(str(QUICKSTART))
    assert wb._widget is None  # lazy: nothing built until needed
    spec = wb.spec()
    assert spec == load_spec(QUICKSTART)
    assert [v.hash for v in spec.variants()] == [v.hash for v in load_spec(QUICKSTART).variants()]
    assert [t for t in wb.widget.titles] == ["Data", "Variants", "Run", "Results", "Export", "Monitor"]
    assert "application/vnd.jupyter.widget-view+json" in wb._repr_mimebundle_()
    assert text(wb.variants_tab.count).startswith("4 variants × 20 questions = 80 model calls")
    assert not wb.run_tab.run_button.disabled


def test_a_retrieval_only_spec_round_trips_in_its_own_order():
    spec = {
        "name": "r",
        "stage": "retrieve",
        "data": {"corpus": {"format": "squad", "path": str(SQUAD)}, "eval": {"format": "squad", "path": str(SQUAD), "limit": 5}},
        "space": {
            "chunking": [{"strategy": "none"}, {"strategy": "recursive", "size": 300, "overlap": 30}],
            "retrieval": [{"kind": "hybrid", "k": 5, "rrf_k": 10}],
        },
        "retrieval_cutoffs": [10],
    }
    wb = Workbench(spec)
    assert wb.spec() == load_spec(spec)
    assert text(wb.variants_tab.count).startswith("2 variants × 5 questions = 10 cells (retrieval only, no model calls)")


def test_changing_widgets_changes_the_spec_and_the_count():
    wb = Workbench(str(QUICKSTART))
    vt = wb.variants_tab
    vt.chunking["token"].enabled.value = False
    vt.chunking["recursive"].sizes.value = "300, 500"
    spec = wb.spec()
    assert [(c.strategy, c.size, c.overlap) for c in spec.space.chunking] == [("recursive", 300, 50), ("recursive", 500, 50)]
    vt.retrieval_kinds["bm25"].value = False
    vt.retrieval_k.value = "3, 5"
    spec = wb.spec()
    assert [(r.kind, r.k) for r in spec.space.retrieval] == [("dense", 3), ("dense", 5)]
    assert text(vt.count).startswith("4 variants × 20 questions = 80 model calls")
    wb.data_tab.eval_limit.value = 5
    assert wb.spec().data.eval.limit == 5
    assert text(vt.count).startswith("4 variants × 5 questions = 20 model calls")
    vt.add_prompt()
    assert len(wb.spec().space.prompt) == 2
    assert text(vt.count).startswith("8 variants × 5 questions = 40 model calls")
    vt.remove_prompt(vt.prompts[-1])
    assert len(wb.spec().space.prompt) == 1


def test_configured_endpoints_are_offered_as_models():
    endpoint = ModelConfig(provider="openai", model="llama3.2", base_url="http://localhost:11434/v1")
    wb = Workbench(str(QUICKSTART), endpoints=[endpoint])
    boxes = wb.variants_tab.models.boxes
    assert [b.value for b in boxes] == [True, False]
    assert "llama3.2" in boxes[1].description
    boxes[1].value = True
    assert wb.spec().space.model[1] == endpoint
    assert text(wb.variants_tab.count).startswith("8 variants")


def test_template_slots_are_checked_as_you_type():
    wb = Workbench(str(QUICKSTART))
    editor = wb.variants_tab.prompts[0]
    assert text(editor.status) == "✓ slots {context} {question}"
    editor.template.value = "Context: {context}\nAnswer:"
    assert text(editor.status) == "template lacks the slot(s) {question}"
    assert is_red(editor.status)
    with pytest.raises(ConfigError, match=r"lacks the slot\(s\) \{question\}"):
        wb.spec()
    assert wb.run_tab.run_button.disabled
    assert "{question}" in text(wb.run_tab.problem)
    with pytest.raises(ConfigError):
        wb.run()
    editor.template.value = "Context: {context}\nQuestion: {question}\nAnswer:"
    assert text(editor.status) == "✓ slots {context} {question}"
    assert text(wb.variants_tab.errors) == "" and text(wb.run_tab.problem) == ""
    assert not wb.run_tab.run_button.disabled
    assert wb.spec().space.prompt[0].template.endswith("Answer:")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sizes", "abc", "chunking recursive sizes: 'abc' is not a whole number"),
        ("sizes", "", "chunking recursive sizes: empty"),
        ("overlaps", "500", "chunking recursive overlaps: overlap 500 must be smaller than size 500"),
        ("overlaps", "x", "chunking recursive overlaps: 'x' is not a whole number"),
    ],
)
def test_bad_chunk_input_names_the_field(field, value, expected):
    wb = Workbench(str(QUICKSTART))
    getattr(wb.variants_tab.chunking["recursive"], field).value = value
    assert expected in text(wb.variants_tab.errors)
    assert text(wb.variants_tab.count).startswith("variants: –")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        wb.spec()


def test_nothing_ticked_is_an_error_naming_the_axis():
    wb = Workbench(str(QUICKSTART))
    for box in wb.variants_tab.retrieval_kinds.values():
        box.value = False
    assert "retrieval kinds: tick at least one" in text(wb.variants_tab.errors)


# ---------------------------------------------------------------- data tab


def test_data_tab_loads_the_real_squad_file_and_shows_counts_digests_preview():
    wb = Workbench(str(QUICKSTART))
    dt = wb.data_tab
    dt.corpus_path.value = dt.eval_path.value = str(SQUAD)
    dt.eval_limit.value = 0  # all questions
    dt.load_button.click()
    shown = text(dt.summary)
    corpus = load_corpus(wb.spec().data.corpus)
    assert "54 documents" in shown and corpus.digest[:12] in shown
    n = int(re.search(r"<b>(\d+) questions</b>", dt.summary.value).group(1))
    assert n > 20
    assert "Super_Bowl_50/0" in text(dt.preview) and "<table" in dt.preview.value
    assert text(wb.variants_tab.count).startswith(f"4 variants × {n} questions = {4 * n} model calls")


def test_data_tab_missing_path_is_a_red_message_not_an_exception():
    wb = Workbench(str(QUICKSTART))
    wb.data_tab.corpus_path.value = "no/such/file.json"
    wb.data_tab.load_button.click()  # must not raise
    assert is_red(wb.data_tab.message)
    assert "no/such/file.json" in text(wb.data_tab.message)
    assert "Traceback" not in text(wb.data_tab.message)


def test_a_failing_run_is_a_message_in_the_run_tab(tmp_path):
    wb = Workbench(quickstart_in(tmp_path, limit=2))
    wb.data_tab.eval_path.value = str(tmp_path / "missing.json")
    wb.run_tab.run_button.click()
    wait(wb._thread, 60)
    assert is_red(wb.run_tab.status) and "missing.json" in text(wb.run_tab.status)
    assert "Traceback" not in text(wb.run_tab.status)
    assert wb.error is not None and wb.results is None
    assert not wb.run_tab.run_button.disabled and wb.run_tab.cancel_button.disabled


# ---------------------------------------------------------------- the Results tab from results (no model)


def scored_results():
    """The quickstart's 4 variants with 6 scored questions each (rows as the runner writes them; no model)."""
    from workbench.analysis.results import SweepResults

    spec = load_spec(QUICKSTART)
    variants = spec.variants()
    rows = []
    for i, v in enumerate(variants):
        for q in range(6):
            f1 = ((i + 2 * q) % 5) / 4
            rows.append({"variant_hash": v.hash, "variant": v.short_hash, "question_id": f"56be4db0acb8001400a502e{q}",
                         "question": f"Which team won game {q} of the season, according to the article?",
                         "answer": f"team {i}-{q}", "reference_answers": [f"team {q}"], "relevant_ids": [f"doc{q}"],
                         "retrieved_chunk_doc_ids": [f"doc{q}"], "contexts": [f"context {q}"], "error": None,
                         "latency_total_s": 0.5 + i + q / 10, "f1": f1, "exact_match": float(f1 == 1.0)})
    return SweepResults(spec=spec, sweep_id="20261129-000000-abcdef", variants=variants, rows=rows)


@pytest.fixture
def results_tab():
    from workbench.ui.results_tab import ResultsTab

    tab = ResultsTab(on_load=lambda sweep_id: None)
    results = scored_results()
    tab.show(results)
    return tab, results


def test_results_tab_draws_table_figures_and_grid_with_short_labels(results_tab):
    tab, results = results_tab
    assert tab.pareto.figure is not None and tab.bars.figure is not None and tab.heatmap.figure is not None
    for view in (tab.pareto, tab.bars, tab.heatmap):  # in the widget tree, filling its width
        assert len(view.figure_widget.data) == len(view.figure.data)
        assert view.figure_widget.layout.width is None and view.figure_widget._config["responsive"] is True
        assert type(view.widget.children[1]).__name__ == "FitWidth"
    heat = tab.heatmap.figure_widget
    assert list(heat.layout.xaxis.ticktext) == ["recursive500/50<br>dense@3", "recursive500/50<br>bm25@3",
                                                 "token128/16<br>dense@3", "token128/16<br>bm25@3"]
    assert all(t.startswith("Which team won game") for t in heat.layout.yaxis.ticktext)
    assert (heat.data[0].zmin, heat.data[0].zmax) == (0.0, 1.0)
    assert "f1 ↑ ▼" in tab.table.value and "recursive500/50 · all-MiniLM-L6-v2-int8 · dense@3 · concise" in tab.table.value
    assert tab.answers.metric.value == "f1" and tab.answers.grid.total == 6
    assert tab.answers.html.value.count('class="wb-cell"') == 24


def test_clicking_a_heatmap_cell_opens_that_variant_and_question(results_tab):
    tab, results = results_tab
    info = tab.heat_info
    before = tab.question.value
    row = next(i for i, q in enumerate(info.question_ids) if q != before)
    variant, question = info.cell_at(2, row)
    tab.heatmap.click(0, [row, 2], x=2, y=row)  # the message the browser sends for a click on (column 2, row)
    assert tab.question.value == question != before
    assert tab.variant.value == results.variant(variant).hash
    row = tab.selected_row()
    assert row["question_id"] == question and row["answer"] in text(tab.detail)
    assert f'data-question="{question}"' in tab.detail.value


def test_clicking_a_pareto_point_or_a_bar_opens_that_variant(results_tab):
    tab, results = results_tab
    first = results.variants[0]
    assert tab.variant.value == first.hash
    points = [(t, p, v) for t, trace in enumerate(tab.pareto.figure_widget.data)
              for p, v in enumerate(trace.customdata if trace.customdata is not None else ()) if v != first.short_hash]
    trace, point, clicked = points[0]
    tab.pareto.click(trace, point, x=0.0, y=0.0)
    assert tab.variant.value == results.variant(clicked).hash != first.hash
    tab.bars.click(0, 0, x=0.0, y=0.0)  # the first bar of the first panel: the first variant
    assert tab.variant.value == first.hash and first.short_hash in tab.detail.value


def test_grid_filters_and_table_sort_from_the_widgets(results_tab):
    tab, _ = results_tab
    tab.answers.show.value = "failures"
    failing = tab.answers.grid.failing
    assert len(tab.answers.grid.rows) == failing and tab.answers.html.value.count("<tr data-question=") == failing
    tab.answers.show.value = "disagreements"
    assert all(r.divides for r in tab.answers.grid.rows)
    tab.answers.metric.value = "exact_match"
    assert tab.answers.grid.metric == "exact_match"
    tab.sort_by.value = "latency_total_p95_s"
    assert "latency_total_p95_s ↓ ▼" in tab.table.value
    ids = re.findall(r'class="data row\d+ col0" >([0-9a-f]+)</td>', tab.table.value)
    assert ids == [v.short_hash for v in tab.results.variants]  # latency grows with the variant's position


# ---------------------------------------------------------------- a real run, then results and export


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A real 1-variant × 2-question sweep started with the Run button: (workbench, tmp dir, tracking uri)."""
    tmp = tmp_path_factory.mktemp("ui-run")
    uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
    wb = Workbench(quickstart_in(tmp, limit=2), tracking_uri=uri)
    only_bm25(wb)
    assert text(wb.variants_tab.count).startswith("1 variant × 2 questions = 2 model calls")
    wb.run_tab.run_button.click()
    assert wb.running and not wb.run_tab.cancel_button.disabled
    wait(wb._thread)
    assert wb.error is None, wb.error
    return wb, tmp, uri


@pytest.mark.slow
def test_run_button_runs_the_sweep_with_live_progress_and_table(ran):
    wb, _, uri = ran
    rt = wb.run_tab
    assert rt.progress.bar.max == 2 and rt.progress.bar.value == 2
    assert text(rt.status).startswith(f"sweep {wb.results.sweep_id}: FINISHED")
    assert uri in text(rt.status)
    assert len(rt.rows) == 2
    live = text(rt.table)
    assert "bm25@3" in live and "f1" in live
    assert wb.results.status == "FINISHED" and len(wb.results.rows) == 2
    assert wb.results.spec.tracking.tracking_uri == uri
    assert not rt.run_button.disabled and rt.cancel_button.disabled


@pytest.mark.slow
def test_results_tab_shows_figures_and_the_drill_down(ran):
    wb, _, _ = ran
    res = wb.results_tab
    assert res.pareto.figure is not None and len(res.pareto.figure.data) >= 1
    assert res.bars.figure is not None and res.heatmap.figure is not None
    res.x_axis.value = "cost_usd_per_1k"
    assert res.pareto.figure.layout.xaxis.title.text.startswith("cost")
    for view in (res.pareto, res.bars, res.heatmap):  # the figure is in the widget tree, not only on the object
        if view.figure_widget is not None:  # go.FigureWidget (needs anywidget)
            assert len(view.figure_widget.data) == len(view.figure.data)
            assert view.figure_widget.layout.title.text == view.figure.layout.title.text
        else:  # an Output holding plotly's mimetype, which JupyterLab renders
            assert "application/vnd.plotly.v1+json" in view.output.outputs[0]["data"]
    row = wb.results.rows[1]
    res.question.value = row["question_id"]
    detail = text(res.detail)
    assert row["question"] in detail and row["answer"] in detail
    assert row["reference_answers"][0] in detail
    assert row["retrieved_chunk_doc_ids"][0] in detail and "f1" in detail


@pytest.mark.slow
def test_load_sweep_fills_results_without_running(ran):
    wb, tmp, uri = ran
    before = count_runs(uri)
    fresh = Workbench(quickstart_in(tmp, limit=2), tracking_uri=uri)
    fresh.results_tab.sweep_id.value = wb.results.sweep_id
    fresh.results_tab.load_button.click()
    assert count_runs(uri) == before
    assert fresh.results.sweep_id == wb.results.sweep_id and len(fresh.results.rows) == 2
    assert fresh.results_tab.pareto.figure is not None
    assert wb.results.rows[0]["answer"] in text(fresh.results_tab.detail)
    assert fresh.widget.selected_index == 3
    fresh.results_tab.sweep_id.value = "no-such-sweep"
    fresh.results_tab.load_button.click()
    assert is_red(fresh.results_tab.message) and "no-such-sweep" in text(fresh.results_tab.message)


@pytest.mark.slow
def test_export_best_under_constraints_writes_the_yaml_and_names_the_run(ran):
    wb, tmp, uri = ran
    ex = wb.export_tab
    ex.mode.value = "best"
    ex.objective.value = "f1"
    ex.constraints.value = "latency_total_p95_s<=0.000001"
    ex.decide_button.click()
    assert is_red(ex.reason) and "no variant meets the constraints" in text(ex.reason)
    ex.constraints.value = "latency_total_p95_s<=1000, cost_usd_per_1k<=0.5"
    ex.decide_button.click()
    variant = wb.results.variants[0]
    assert f"best: {variant.short_hash}" in text(ex.reason) and "the only variant meeting the constraints" in text(ex.reason)
    out = tmp / "exports" / "winner.yaml"
    ex.path.value = str(out)
    ex.export_button.click()
    assert out.is_file() and variant.hash in out.read_text()
    run_id = wb.results.run_ids[variant.hash]
    assert str(out) in text(ex.message)
    assert run_id in text(ex.link) and f'/runs/{run_id}" target="_blank"' in ex.link.value
    assert f"mlflow ui --backend-store-uri {uri}" in text(ex.link)


@pytest.mark.slow
def test_cancel_stops_the_run_after_the_current_cell(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    wb = Workbench(quickstart_in(tmp_path, limit=8), tracking_uri=uri)
    only_bm25(wb)
    thread = wb.run()
    deadline = time.time() + 300
    while wb.run_tab.progress.bar.value < 1 and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    wb.run_tab.cancel_button.click()
    wait(thread)
    assert wb.error is None, wb.error
    assert wb.results.status == "KILLED"
    assert 1 <= len(wb.results.rows) < 8
    assert wb.run_tab.progress.bar.value == len(wb.results.rows) < wb.run_tab.progress.bar.max
    assert "KILLED" in text(wb.run_tab.status)
    mlflow.set_tracking_uri(uri)
    parent = mlflow.get_run(wb.results.parent_run_id)
    assert parent.info.status == "KILLED"


@pytest.mark.slow
def test_run_again_unchanged_returns_the_finished_sweep(ran):
    wb, _, _ = ran
    first = wb.results
    wb.run_tab.run_button.click()
    wait(wb._thread)
    assert wb.error is None, wb.error
    assert wb.results.sweep_id == first.sweep_id and wb.results.stats["reused_cells"] == 2
    assert "identical to finished sweep" in text(wb.run_tab.status)
    assert wb.run_tab.progress.bar.max == 2 and wb.run_tab.progress.bar.value == 2
