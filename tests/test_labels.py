"""Human labels through a real sqlite MLflow store, promoting corrections, and judge agreement (κ by hand)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest

from conftest import SQUAD, small_spec
from workbench.analysis.labelling import agreement_warning, next_version_path
from workbench.analysis.load import load_sweep
from workbench.data.evalset import load_eval
from workbench.errors import ConfigError
from workbench.runner.sweep import run_sweep
from workbench.scoring.agreement import agreement, fast_kappa, kappa
from workbench.spec import EvalSource
from workbench.testing.fake_endpoint import LatencyEndpoint

N = 4
# A real sweep logged to a fresh sqlite store costs ~15 s (the store's migrations, the helper process):
# over the fast set's budget, so the four tests that share it run with the slow set.
SLOW_STORE = pytest.mark.slow


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A real 2-variant sweep (fake endpoint, BM25) on a copy of the SQuAD file, logged to sqlite."""
    tmp = tmp_path_factory.mktemp("labels")
    squad = tmp / "squad.json"
    shutil.copy(SQUAD, squad)
    spec = small_spec(tmp, retrieval=[{"kind": "bm25", "k": 2}, {"kind": "bm25", "k": 3}])
    spec["data"]["corpus"]["path"] = spec["data"]["eval"]["path"] = str(squad)
    spec["data"]["eval"]["limit"] = N
    with LatencyEndpoint(latency=0.0) as ep:
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url,
                                   "max_tokens": 8}]
        results = run_sweep(spec, progress=False)
    return spec, results


@SLOW_STORE
def test_labels_are_mlflow_assessments_read_back_by_load_sweep(logged, monkeypatch):
    spec, results = logged
    monkeypatch.setenv("WORKBENCH_LABELLER", "ada")
    a, b = results.variants
    q = results.questions()
    first = q[q["variant_hash"] == a.hash].iloc[0]
    results.label(a.short_hash, first["question"], "wrong", corrected="Denver Broncos", note="names the loser")
    results.label(b.short_hash, str(first["question_id"]), "correct")
    results.label(a.short_hash, first["question"], "partly", corrected="The Denver Broncos")  # newest wins

    trace = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).get_trace(results.labels[-1]["trace_id"])
    human = [x for x in trace.info.assessments if x.source.source_type == "HUMAN" and x.name == "human_verdict"]
    assert {x.value for x in human} == {"wrong", "partly"} and {x.source.source_id for x in human} == {"ada"}
    assert any(x.name == "corrected_answer" and x.expectation is not None for x in trace.info.assessments)

    back = load_sweep(results.sweep_id, spec["tracking"]["tracking_uri"])
    got = {(x["variant_hash"], x["question_id"]): x for x in back.labels}
    assert len(got) == 2
    mine = got[(a.hash, str(first["question_id"]))]
    assert (mine["verdict"], mine["corrected"], mine["labeller"]) == ("partly", "The Denver Broncos", "ada")
    assert got[(b.hash, str(first["question_id"]))]["verdict"] == "correct"
    frame = back.labels_frame()
    assert set(frame["verdict"]) == {"partly", "correct"} and frame["answer"].notna().all()
    queue = back.review_queue()
    assert len(queue) == 2 * N - 2  # the labelled ones are done
    assert queue["priority"].is_monotonic_decreasing

    promoted = back.promote_corrections()
    assert promoted.name == "squad.v2.jsonl" and str(promoted.parent) == str(Path(spec["data"]["eval"]["path"]).parent)
    new = load_eval(EvalSource(format="jsonl", path=str(promoted)))
    old = load_eval(EvalSource(format=spec["data"]["eval"]["format"], path=spec["data"]["eval"]["path"]))
    assert len(new) == len(old)
    fixed = next(i for i in new if i.id == str(first["question_id"]))
    assert fixed.reference_answers[0] == "The Denver Broncos"
    assert back.promote_corrections().name == "squad.v3.jsonl"  # never overwrites a version


@SLOW_STORE
def test_bad_labels_get_one_clear_error(logged):
    _, results = logged
    v = results.variants[0].short_hash
    with pytest.raises(ConfigError, match="verdict: 'maybe'"):
        results.label(v, "whatever", "maybe")
    with pytest.raises(ConfigError, match="question: 'no such question'"):
        results.label(v, "no such question", "wrong")
    with pytest.raises(ConfigError, match="corrected"):
        results.label(v, str(results.rows[0]["question_id"]), "wrong", corrected="  ")


def test_judge_agreement_matches_hand_computed_kappa():
    scores = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3, 0.65, 0.85, 0.4]
    human = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]
    a = agreement("faithfulness", scores, human, n_bootstrap=200)
    # best cut: between 0.65 and 0.7 -> tp 4, tn 5, fn 1 (the 0.3), fp 0; accuracy 0.9
    # κ = (po − pe) / (1 − pe), po = 0.9, pe = 0.5·0.4 + 0.5·0.6 = 0.5 -> 0.8
    assert a.threshold == pytest.approx(0.675)
    assert (a.tn, a.fp, a.fn, a.tp) == (5, 0, 1, 4)
    assert a.accuracy == pytest.approx(0.9) and a.kappa == pytest.approx(0.8)
    assert a.kappa_ci[0] <= 0.8 <= a.kappa_ci[1] and a.accuracy_ci[1] <= 1.0
    assert not a.low
    rng = np.random.default_rng(1)
    for _ in range(20):  # the bootstrap's numpy κ is scikit-learn's
        h, j = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        assert fast_kappa(h, j) == pytest.approx(kappa(h, j)) or kappa(h, j) is None
    few = agreement("faithfulness", scores[:3], human[:3])
    assert few.kappa is None and "10 needed" in few.note


@SLOW_STORE
def test_judge_agreement_logged_to_the_parent_run_and_warned(logged, monkeypatch):
    spec, results = logged
    back = load_sweep(results.sweep_id, spec["tracking"]["tracking_uri"])
    # the judge's scores as a judge would have written them (the fake sweep has no judge): all yes
    for row in back.rows:
        row["faithfulness"] = 0.9
    for row in back.rows[:5]:
        back.label(row["variant"], str(row["question_id"]), "wrong" if row is back.rows[0] else "correct")
    table = back.judge_agreement(min_labels=4)
    got = table.loc["faithfulness"]
    assert got["n"] == 5 and got["tp"] + got["fp"] + got["tn"] + got["fn"] == 5
    assert got["accuracy"] == pytest.approx(0.8) and got["kappa"] == 0.0  # the judge only says yes: no better than chance
    assert "low judge agreement" in agreement_warning(table)
    run = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).get_run(back.parent_run_id)
    assert run.data.metrics["judge_agreement.faithfulness.accuracy"] == pytest.approx(0.8)
    path = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).download_artifacts(
        back.parent_run_id, "judge_agreement.json", str(spec["home"]))
    assert json.loads(open(path).read())["rows"][0]["metric"] == "faithfulness"


def test_next_version_path(tmp_path):
    assert next_version_path(tmp_path / "eval.jsonl").name == "eval.v2.jsonl"
    (tmp_path / "eval.v2.jsonl").write_text("")
    assert next_version_path(tmp_path / "eval.jsonl").name == "eval.v3.jsonl"
    assert next_version_path(tmp_path / "eval.v3.jsonl").name == "eval.v4.jsonl"


@SLOW_STORE
def test_labelling_panel_saves_a_label_and_walks_the_queue(logged, monkeypatch):
    from workbench.ui.results_tab import ResultsTab

    spec, results = logged
    monkeypatch.setenv("WORKBENCH_LABELLER", "grace")
    tab = ResultsTab(on_load=lambda _: None)
    tab.show(results)
    panel = tab.labelling
    panel.order.value = "questions"
    panel.step(1)  # to the first (variant, question) of the walk
    row = tab.selected_row()
    panel.verdict.value, panel.corrected.value, panel.note.value = "wrong", "Carolina Panthers", "lost"
    entry = panel.save_label()
    assert entry is not None and "saved: wrong" in panel.status.value
    trace = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).get_trace(entry["trace_id"])
    verdicts = [a for a in trace.info.assessments if a.name == "human_verdict" and a.source.source_id == "grace"]
    assert [a.value for a in verdicts] == ["wrong"] and verdicts[0].rationale == "lost"
    assert (entry["variant_hash"], entry["question_id"]) == (row["variant_hash"], str(row["question_id"]))
    before = tab.selected_row()
    panel.order.value = "queue"
    panel.step(1)
    assert tab.selected_row() is not before  # the queue moved on to an unlabelled answer
    panel.verdict.value = None
    assert panel.save_label() is None and "choose correct" in panel.status.value
    shown = tab.selected_row()
    panel.on_key({"event": "keydown", "key": "2"})  # the keyboard: label partly and save, then next
    mine = [x for x in tab.results.labels if x["labeller"] == "grace"]
    assert (mine[-1]["variant_hash"], mine[-1]["question_id"], mine[-1]["verdict"]) == (
        shown["variant_hash"], str(shown["question_id"]), "partly")
    panel.on_key({"event": "keydown", "key": "ArrowRight"})
    assert tab.selected_row() is not shown


def test_agreement_figure_draws_kappa_and_accuracy_with_cis():
    from workbench.analysis.plots.agreement import plot_agreement

    scores = [0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3, 0.65, 0.85, 0.4]
    human = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]
    import pandas as pd

    table = pd.DataFrame([agreement("faithfulness", scores, human, n_bootstrap=100).row()]).set_index("metric")
    fig = plot_agreement(table)
    kappa_bar = next(t for t in fig.data if t.name == "Cohen's κ")
    assert list(kappa_bar.x) == [pytest.approx(0.8)] and kappa_bar.error_x.array[0] >= 0
    assert "TP 4 FP 0 FN 1 TN 5" in kappa_bar.hovertext[0]


def test_label_panel_keys_come_from_ipyevents_and_map_to_actions():
    """The handler gets the dict ipyevents' front end sends; 1/2/3 label (and save), n/p step."""
    from ipyevents import Event

    from workbench.ui.results_tab import ResultsTab

    panel = ResultsTab(on_load=lambda _: None).labelling
    assert isinstance(panel.keys, Event) and panel.keys.source is panel.keys_row
    assert panel.corrected not in panel.keys_row.children  # typing a correction is never swallowed
    key = {"event": "keydown", "key": "3", "code": "Digit3", "ctrlKey": False, "altKey": False, "metaKey": False}
    panel.keys._handle_mouse_msg(None, key, [])  # as the widget's comm delivers it
    assert panel.verdict.value == "wrong" and "open a variant and a question first" in panel.status.value
    panel.keys._handle_mouse_msg(None, {**key, "key": "1", "ctrlKey": True}, [])  # Ctrl+1 is not ours
    panel.keys._handle_mouse_msg(None, {**key, "key": "x"}, [])
    assert panel.verdict.value == "wrong"
    panel.keys._handle_mouse_msg(None, {**key, "key": "2"}, [])
    assert panel.verdict.value == "partly"
