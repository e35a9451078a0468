"""Adaptive search (issue 14, part 3): successive halving and Optuna over a planted space, answered over
HTTP by the fake endpoint (`workbench.testing.planted`), logged to an in-memory tracker."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from memory_tracker import MemoryTracker
from workbench.errors import ConfigError
from workbench.runner.search.halving import Halving, holm, plan_rungs
from workbench.runner.sweep import run_sweep
from workbench.spec import load_spec
from workbench.spec_search import SearchConfig
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.testing.planted import PlantedQuality, levels_of_variant, planted_space, write_planted_data

SIZES = (2, 2, 2)  # retrieval k, prompt, model: 8 variants
N = 60
CLEAR = (1, 0, 1)  # the lifted variant
CLEAR_MODEL = {"sizes": list(SIZES), "seed": 3, "spread": 0.15, "interactions": 0, "lifted": list(CLEAR), "lift": 2.5}
EQUAL_MODEL = {"sizes": list(SIZES), "seed": 5, "spread": 0.0, "interactions": 0}
HALVING = {"strategy": "halving", "min_questions": 10, "first_rung": 0.1, "eta": 3, "min_survivors": 2}  # 8 variants: cut hard


@pytest.fixture(scope="module")
def clear():
    with LatencyEndpoint(latency=0.0, planted=CLEAR_MODEL) as ep:
        yield ep


@pytest.fixture(scope="module")
def equal():
    with LatencyEndpoint(latency=0.0, planted=EQUAL_MODEL) as ep:
        yield ep


def spec_for(tmp_path: Path, base_url: str, search: dict) -> dict:
    corpus, evalset = write_planted_data(tmp_path / "data", N)
    return {"name": "planted", "data": {"corpus": {"format": "jsonl", "path": corpus},
                                        "eval": {"format": "jsonl", "path": evalset}},
            "space": planted_space(SIZES, base_url), "search": search,
            "execution": {"concurrency": 16}, "tracking": {"enabled": False}, "home": str(tmp_path / "home")}


def calls(endpoint: LatencyEndpoint) -> int:
    return endpoint.stats()["chat_calls"]


@pytest.fixture(scope="module")
def clear_run(tmp_path_factory, clear):
    """One halving search over the space with a clear winner: (results, tracker, calls made)."""
    before = calls(clear)
    tracker = MemoryTracker()
    results = run_sweep(spec_for(tmp_path_factory.mktemp("clear"), clear.base_url, HALVING), progress=False,
                        tracker=tracker)
    return results, tracker, calls(clear) - before


def test_halving_finds_the_clearly_best_variant_with_fewer_calls(clear_run):
    results, tracker, made = clear_run

    winner = results.variant(results.search["winner"])
    assert levels_of_variant(winner) == CLEAR
    assert results.best("f1").winner == winner.short_hash
    assert made == results.stats["model_calls"] < 8 * N * 0.6, made  # rungs of 10, 30, 60 questions
    assert results.search["rung_sizes"] == [10, 30, 60]
    stopped = results.stopped()
    assert stopped and all("stopped by the search at rung" in why for why in stopped.values())
    # every variant is a finished child run, tagged with its rung and the questions it covers
    runs = {r["variant"].hash: r for r in tracker.runs.values() if r["kind"] == "variant"}
    assert len(runs) == 8
    for h, run in runs.items():
        state = results.search["variants"][h]
        assert run["status"] == "FINISHED"
        assert run["tags"]["workbench.search.rung"] == str(state["rung"])
        assert run["tags"]["workbench.search.questions"] == str(state["questions"]) == str(len(run["rows"]))
        assert run["metrics"]["f1_n"] == state["questions"]
        assert (run["tags"]["workbench.search.stopped"] == "no") == (state["stopped"] is None)


def test_halving_says_equal_variants_are_tied(tmp_path, equal):
    results = run_sweep(spec_for(tmp_path, equal.base_url, HALVING), progress=False, tracker=MemoryTracker())
    assert results.search["tied"], results.search["reason"]
    assert "tied" in results.search["reason"] and any("tied" in n for n in results.notes)
    # nothing was stopped for being significantly worse: they are all the same
    assert not any("significantly worse" in (s["stopped"] or "") for s in results.search["variants"].values())
    assert results.best("f1").significant is False


def test_stopped_variants_never_enter_a_comparison_on_questions_they_did_not_answer(clear_run):
    results = clear_run[0]
    stopped = results.stopped()
    finalists = results.finalists()
    assert {v.short_hash for v in finalists.variants}.isdisjoint(stopped)
    assert set(results.compare("f1").index) == {v.short_hash for v in finalists.variants}
    decision = results.best("f1")
    assert set(stopped) <= set(decision.excluded) and not set(stopped) & set(decision.candidates)
    assert set(results.pareto("f1", cost=None, latency=None).index).isdisjoint(stopped)
    # a direct paired difference uses only the questions both answered
    early = next(h for h, s in results.search["variants"].items() if s["rung"] == 0)
    diff = results.diff(results.search["winner"], early, "f1")
    assert diff.n == results.search["variants"][early]["questions"] == 10


def cancelled_after(spec: dict, cells: int):
    """The sweep cancelled once `cells` cells have finished (a user's Cancel, mid-search)."""
    stop, seen = threading.Event(), []

    def on_cell(row):
        seen.append(row)
        if len(seen) == cells:
            stop.set()

    first = run_sweep(spec, progress=False, on_cell=on_cell, cancel=stop, tracker=MemoryTracker())
    assert first.status == "KILLED"
    return first


@pytest.mark.slow  # two sweeps (a cancelled one and its resume): kept out of the fast set's time budget
def test_a_cancelled_halving_resumes_without_asking_again(tmp_path, clear, clear_run):
    spec = spec_for(tmp_path, clear.base_url, HALVING)
    before = calls(clear)
    first = cancelled_after(spec, 50)
    again = run_sweep(spec, progress=False, tracker=MemoryTracker())
    made = calls(clear) - before
    fresh = clear_run[0]  # the same search, run once without a kill
    assert again.status == "FINISHED" and again.sweep_id == first.sweep_id
    assert made == fresh.stats["model_calls"]  # the resumed search asked nothing twice
    assert again.search["winner"] == fresh.search["winner"]
    assert again.search["variants"] == fresh.search["variants"]


# ---------------------------------------------------------------- the pure core


def test_rungs_grow_eta_fold_and_end_on_the_whole_set():
    cfg = SearchConfig(strategy="halving")  # the tuned defaults: eta 2, 3 % or at least 10 questions
    assert plan_rungs(300, cfg) == [10, 20, 40, 80, 160, 300]
    assert plan_rungs(100, cfg) == [10, 20, 40, 100]
    assert plan_rungs(10, cfg) == [10]
    old = SearchConfig(strategy="halving", eta=3, first_rung=0.05, min_questions=15)
    assert plan_rungs(300, old) == [15, 45, 135, 300]


@pytest.mark.parametrize("min_survivors, going_on", [(4, 4), (2, 3)])
def test_at_least_min_survivors_go_on_when_none_is_significantly_worse(min_survivors, going_on):
    """6 variants, the top 1/eta = 3; equal scores (no test rejects): max(min_survivors, 3) go on."""
    cfg = SearchConfig(strategy="halving", eta=2, min_questions=10, min_survivors=min_survivors)
    h = Halving([f"v{i}" for i in range(6)], [f"q{i}" for i in range(100)], cfg)
    ask = h.ask()
    stopped = h.tell({v: {q: float(i % 2) for i, q in enumerate(ask.question_ids)} for v in ask.variants})
    assert len(h.alive) == going_on and all("outside the top" in why for why in stopped.values())


def test_holm_steps_down_and_stays_monotone():
    # by hand: sorted .005·5=.025, .01·4=.04, .03·3=.09, .04·2=.08 -> .09 (monotone), .5·1=.5
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    assert np.allclose(holm(p), [0.04, 0.09, 0.09, 0.025, 0.5])


def test_halving_stops_variants_that_break_a_constraint():
    cfg = SearchConfig(strategy="halving", constraints={"latency_total_p95_s": "<= 2"}, min_questions=4)
    h = Halving(["a", "b", "c"], [f"q{i}" for i in range(12)], cfg)
    ask = h.ask()
    scores = {v: {q: 1.0 for q in ask.question_ids} for v in ask.variants}
    stopped = h.tell(scores, {"a": {"latency_total_p95_s": 1.0}, "b": {"latency_total_p95_s": 3.0}, "c": {}})
    assert "breaks <= 2" in stopped["b"] and "unknown" in stopped["c"] and "a" not in stopped


def test_search_section_errors_name_the_field(tmp_path):
    spec = {"name": "x", "data": {"corpus": {"format": "jsonl", "path": "c"}, "eval": {"format": "jsonl", "path": "e"}}}
    with pytest.raises(ConfigError, match="search: .*n_trials is for strategy random or optuna"):
        load_spec({**spec, "search": {"strategy": "halving", "n_trials": 5}})
    with pytest.raises(ConfigError, match="search.constraints"):
        load_spec({**spec, "search": {"strategy": "halving", "constraints": {"cost_usd_per_1k": "cheap"}}})
    with pytest.raises(ConfigError, match="search.strategy"):
        load_spec({**spec, "search": {"strategy": "bayes"}})


def test_the_planted_endpoint_and_the_oracle_agree(clear):
    import openai

    model = PlantedQuality(**CLEAR_MODEL)
    client = openai.OpenAI(base_url=clear.base_url, api_key="x")
    for i in range(5):
        q = f"What is planted item {i}?"
        content = f"[planted-p0] Context:\n¶ a\n\n¶ b\n\nQuestion: {q}\nAnswer:"
        reply = client.chat.completions.create(model="planted-m1", messages=[{"role": "user", "content": content}])
        assert (reply.choices[0].message.content != "I do not know") == model.correct((1, 0, 1), q)


# ---------------------------------------------------------------- optuna


@pytest.mark.slow  # two sweeps (a cancelled one and its resume): kept out of the fast set's time budget
def test_a_killed_optuna_search_resumes_its_study(tmp_path):
    import json

    import optuna

    from workbench.runner.search.run_optuna import study_name, study_path

    with LatencyEndpoint(latency=0.0, planted=CLEAR_MODEL) as ep:  # its own: it counts distinct messages
        spec = spec_for(tmp_path, ep.base_url, {"strategy": "optuna", "n_trials": 8, "min_questions": 10,
                                                "first_rung": 0.1, "seed": 1})
        first = cancelled_after(spec, 45)
        storage = f"sqlite:///{study_path(load_spec(spec))}"
        study = optuna.load_study(study_name=first.sweep_id and study_name(first.sweep_id), storage=storage)
        left_running = [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
        first_trials = max(t.number for t in study.trials)
        assert left_running  # killed mid-batch: asked, never told

        again = run_sweep(spec, progress=False, tracker=MemoryTracker())
        stats = ep.stats()
    assert again.status == "FINISHED" and again.sweep_id == first.sweep_id
    study = optuna.load_study(study_name=study_name(again.sweep_id), storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert all(states[n] == optuna.trial.TrialState.FAIL for n in left_running)  # resumed, not restarted
    asked_after = [t.params for t in study.trials if t.number > first_trials]
    assert all(study.trials[n].params in asked_after for n in left_running)  # the in-flight trials asked again
    done = [s for s in states.values() if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 8
    # No cell was asked twice across the kill, and every answer paid for is on record. (The results' rows may
    # be fewer: a trial in flight at the kill may have answered a rung its re-asked twin is pruned before.)
    assert stats["chat_calls"] == stats["unique_messages"]
    record = Path(spec["home"]) / "sweeps" / again.sweep_id / "cells.jsonl"
    recorded = {(r["variant_hash"], r["question_id"]) for r in map(json.loads, record.read_text().splitlines())}
    assert len(recorded) == stats["chat_calls"]
    assert {(r["variant_hash"], r["question_id"]) for r in again.rows} <= recorded
    assert levels_of_variant(again.variant(again.search["winner"])) == CLEAR
    assert again.search["storage"] == str(study_path(load_spec(spec)))


# ---------------------------------------------------------------- the notebook: control, progress, figure


def test_the_run_tab_sets_the_strategy_and_draws_the_search(clear_run):
    from conftest import ROOT
    from workbench.analysis.plots.search import search_info
    from workbench.ui import Workbench

    wb = Workbench(str(ROOT / "experiments" / "quickstart.yaml"))
    view = wb.run_tab.search
    assert wb.spec().search.strategy == "grid" and view.n_trials.disabled
    view.strategy.value = "optuna"
    view.n_trials.value = 3
    assert (wb.spec().search.strategy, wb.spec().search.n_trials) == ("optuna", 3)
    view.strategy.value = "halving"
    assert wb.spec().search.strategy == "halving" and wb.spec().search.n_trials is None

    results = clear_run[0]
    view.started({v.hash: v.label() for v in results.variants})
    view.rung(results.search)  # what on_search hands over after a rung
    assert "rung 0: 10 questions, 8 variants entered" in view.progress.value
    info = search_info(results.search, view.labels)
    assert len(info.rows) == 8 and info.rungs == (10, 30, 60)
    by_variant = info.rows.set_index("variant")
    assert by_variant.loc[results.search["winner"], "outcome"] == "winner"
    for h, state in results.search["variants"].items():
        assert by_variant.loc[h, "rung"] == state["rung"]
    drawn = {t.name: len(t.x) for t in view.figure.figure.data if t.mode == "markers"}
    assert sum(drawn.values()) == 8 and drawn["winner"] == 1


@pytest.mark.slow  # the MLflow helper process and a real sqlite store: the one end-to-end search test
def test_a_search_logged_to_mlflow_loads_back_with_its_stopped_variants(tmp_path, clear):
    import mlflow

    from workbench.analysis.load import load_sweep

    spec = spec_for(tmp_path, clear.base_url, HALVING)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    spec["tracking"] = {"tracking_uri": uri, "artifact_location": str(tmp_path / "mlruns" / "art")}
    results = run_sweep(spec, progress=False)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("planted").experiment_id],
        filter_string="tags.`workbench.kind` = 'variant'")
    assert len(runs) == 8
    for run in runs:
        state = results.search["variants"][run.data.tags["workbench.variant_hash"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["workbench.search.rung"] == str(state["rung"])
        assert run.data.tags["workbench.search.questions"] == str(state["questions"])
    loaded = load_sweep(results.sweep_id, tracking_uri=uri)
    assert loaded.stopped() == results.stopped() and loaded.stopped()
    assert loaded.best("f1").winner == results.best("f1").winner
    assert set(loaded.stopped()) <= set(loaded.best("f1").excluded)
