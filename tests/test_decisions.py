"""Decisions you can trust (issue 15): the leader's comparisons corrected for their number, the tied set
the tie-break chooses from, and the Pareto view's tied column. Synthetic question frames (the statistics
are the unit); the simulations that check the error rates are in experiments/benchmarks/stats_check.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.family import CORRECTIONS, adjust, leader_tests
from workbench.analysis.stats import StatsError, best
from test_stats import frame_from, questions_frame, vid


def near_tie(n: int = 40, seed: int = 5, gaps=(0.0, 0.04, 0.3)) -> pd.DataFrame:
    """Variants a, b, c...: a per-question base plus a gap below a and noise of sd 0.1."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, n)
    return questions_frame({chr(97 + i): list(base - g + rng.normal(0, 0.1, n)) for i, g in enumerate(gaps)})


def test_holm_adjusts_like_statsmodels_and_none_leaves_p_alone():
    p = [0.01, 0.04, 0.03]
    assert adjust(p, "holm").tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert adjust(p, "bonferroni").tolist() == pytest.approx([0.03, 0.12, 0.09])
    assert adjust(p, "none").tolist() == p
    assert set(CORRECTIONS) >= {"holm", "bonferroni", "none"}


def test_the_family_is_every_pair_and_the_tied_set_keeps_the_leader_first():
    q = near_tie(gaps=(0.0, 0.01, 0.02, 0.5))
    t = leader_tests(q, vid("a"), [vid("b"), vid("c"), vid("d")], "f1")
    assert t.pairs == 6 and t.family == "all-pairs" and t.correction == "holm"
    assert t.tied == [vid("a"), vid("b"), vid("c")]  # d is 0.5 worse: out
    assert all(t.p_adjusted[v] >= t.p_raw[v] for v in t.p_raw)
    assert t.leader_better(vid("d")) and not t.leader_better(vid("b"))
    only = leader_tests(q, vid("a"), [vid("b"), vid("c"), vid("d")], "f1", family="leader")
    assert only.pairs == 3 and only.p_raw == t.p_raw  # same test, smaller family
    assert all(only.p_adjusted[v] <= t.p_adjusted[v] for v in t.p_raw)


def test_the_correction_can_turn_a_significant_lead_into_a_tie():
    """A gap significant at p < 0.05 on its own but not after Holm over three pairs."""
    q = near_tie(n=30, seed=1, gaps=(0.0, 0.05, 0.06))  # seed 1: the first of 0.. where the two disagree
    frame = frame_from(q, cost_usd_per_1k={"a": 1.0, "b": 0.5, "c": 0.1})
    raw, holm = best(frame, q, "f1", correction="none"), best(frame, q, "f1")
    assert frame["f1"].idxmax() == vid("a") and raw.tied == [vid("a")]
    assert raw.winner == vid("a") and raw.significant is True
    assert "not corrected for the 3 tests" in raw.reason
    assert holm.significant is False and holm.winner in holm.tied and holm.winner != vid("a")
    assert "Holm over 3 pairwise tests p=" in holm.reason and f"tied set: {', '.join(holm.tied)}" in holm.reason


def test_the_tie_break_only_sees_the_tied_set():
    q = near_tie(gaps=(0.0, 0.01, 0.5))
    frame = frame_from(q, cost_usd_per_1k={"a": 2.0, "b": 1.0, "c": 0.0})  # c: free but far worse
    d = best(frame, q, "f1")
    assert d.tied == [vid("a"), vid("b")] and d.winner == vid("b")
    assert f"tied set: {vid('a')}, {vid('b')} (not significantly worse than {vid('a')}); chose the cheaper {vid('b')}" in d.reason


def test_an_unknown_correction_is_one_clear_error():
    q = near_tie()
    with pytest.raises(StatsError, match="correction 'fdr_bh' is not one of holm, bonferroni"):
        best(frame_from(q), q, "f1", correction="fdr_bh")


def test_a_variant_sharing_no_question_with_the_leader_is_named_untested_and_not_tied():
    q = near_tie(gaps=(0.0, 0.01))
    other = questions_frame({"z": [0.05] * 5}).assign(question_id=[f"other{i}" for i in range(5)])
    q = pd.concat([q, other], ignore_index=True)
    frame = frame_from(q, cost_usd_per_1k={"a": 1.0, "b": 1.0, "z": 0.0})
    d = best(frame, q, "f1")
    assert vid("z") not in d.tied and d.tests.untested == [vid("z")]
    assert f"untested (no shared question): {vid('z')}" in d.reason


def test_repeats_are_averaged_per_question_before_the_test():
    q = near_tie(n=12, gaps=(0.0, 0.3))
    doubled = pd.concat([q, q.assign(f1=q["f1"] + 0.01)], ignore_index=True)  # a second answer per question
    t1 = leader_tests(q, vid("a"), [vid("b")], "f1")
    t2 = leader_tests(doubled, vid("a"), [vid("b")], "f1")
    assert t2.n == t1.n == {vid("b"): 12}  # questions, not rows


# ---------------------------------------------------------------- the regression gate's decision

from workbench.analysis.gate import gate_decision  # noqa: E402


def gate_frame(drop: float, n: int = 40, seed: int = 9, sd: float = 0.05) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, n)
    return questions_frame({"c": list(base - drop + rng.normal(0, sd, n)), "b": list(base)})


def test_the_gate_fails_only_a_significant_drop_beyond_the_allowance():
    bad = gate_decision(gate_frame(0.1), vid("c"), vid("b"), "f1", 0.02)
    assert not bad.passed and bad.p_value < 0.05 and bad.drop > 0.02
    assert bad.line.startswith(f"gate FAIL: candidate {vid('c')} f1 ") and "significantly worse than baseline" in bad.line
    allowed = gate_decision(gate_frame(0.01), vid("c"), vid("b"), "f1", 0.02)  # a real drop, but within the allowance
    assert allowed.passed and allowed.line.startswith("gate PASS:")
    noisy = gate_decision(gate_frame(0.04, n=6, sd=0.3), vid("c"), vid("b"), "f1", 0.02)  # beyond, but not significantly
    assert noisy.drop > 0.02 and noisy.passed and "not significantly worse" in noisy.line
    better = gate_decision(gate_frame(-0.1), vid("c"), vid("b"), "f1", 0.0)
    assert better.passed and better.change > 0 and better.p_value == 1.0


def test_the_gate_rejects_a_negative_allowance_and_too_few_shared_questions():
    with pytest.raises(StatsError, match="--max-drop must be a number >= 0"):
        gate_decision(gate_frame(0.1), vid("c"), vid("b"), "f1", -0.1)
    with pytest.raises(StatsError, match="share 1 scored question"):
        gate_decision(gate_frame(0.1, n=1), vid("c"), vid("b"), "f1", 0.02)


# ---------------------------------------------------------------- SweepResults: best, pareto, power, repeats

from conftest import ROOT  # noqa: E402


def repeated_results(n: int = 12, repeats: int = 2, gaps=(0.0, 0.02, 0.03, 0.4), seed: int = 3):
    """The quickstart's 4 variants, `repeats` answers per question (rows as the runner writes them with repeats)."""
    from workbench.analysis.results import SweepResults
    from workbench.spec import load_spec

    spec = load_spec(ROOT / "experiments" / "quickstart.yaml")
    variants = spec.variants()
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, n)
    rows = []
    for v, gap in zip(variants, gaps):
        for q in range(n):
            for r in range(repeats):
                rows.append({"variant_hash": v.hash, "variant": v.short_hash, "question_id": f"q{q}", "question": f"question {q}?",
                             "repeat": r, "answer": "x", "error": None, "latency_total_s": 0.5,
                             "f1": float(base[q] - gap + rng.normal(0, 0.1))})
    return SweepResults(spec=spec, sweep_id="20261130-000000-abcdef", variants=variants, rows=rows)


def test_results_best_names_the_tied_set_and_how_many_questions_would_settle_it():
    results = repeated_results()
    frame = results.to_frame()
    assert {"f1_var_question", "f1_var_generation"} <= set(frame.columns) and (frame["f1_n"] == 12).all()
    assert "f1_var_judge" not in frame.columns  # one judge pass: not separable
    d = results.best("f1")
    worst = frame["f1"].idxmin()
    assert d.significant is False and worst not in d.tied and len(d.tied) == 3
    assert d.power and d.power.startswith("to detect a f1 difference of ") and "with repeats: 1 -> " in d.power
    assert results.best("f1", correction="bonferroni").tests.correction == "bonferroni"


def test_pareto_marks_the_front_points_tied_with_the_quality_leader():
    front = repeated_results().pareto("f1", cost=None, latency=None)
    assert list(front.columns[-2:]) == ["f1_p_vs_leader", "f1_tied"] and front["f1_tied"].all()


def test_results_power_defaults_to_the_top_two_and_names_a_bad_variant():
    results = repeated_results()
    ranked = results.to_frame()["f1"].sort_values(ascending=False).index
    p = results.power("f1", 0.05)
    assert (p.a, p.b, p.n_have, p.repeats_have) == (ranked[0], ranked[1], 12, 2)
    with pytest.raises(StatsError, match="variant 'zzz' matches 0 variants"):
        results.power("f1", 0.05, a="zzz")


def test_the_results_tab_warns_when_the_eval_set_cannot_separate_the_top_two():
    from workbench.ui.results_tab import ResultsTab

    tab = ResultsTab(on_load=lambda sweep_id: None)
    tab.show(repeated_results())
    assert "the eval set is too small to separate the top two on f1: 12 questions detect" in tab.summary.value
    assert tab.variance.widget.layout.display is None and tab.variance.figure is not None  # repeats: the split is drawn
    assert repeated_results(n=40, gaps=(0.0, 0.5, 0.5, 0.5)).power_warning("f1") is None  # a clear lead: no warning


def test_the_variance_split_table_and_figure():
    from workbench.analysis.plots.variance import plot_variance_split, variance_info

    results = repeated_results()
    table = results.variance_split("f1")
    assert list(table.columns) == ["label", "question", "generation", "judge", "question_share", "generation_share", "judge_share"]
    assert (table["question_share"] + table["generation_share"]).round(9).eq(1).all() and table["judge"].isna().all()
    fig = plot_variance_split(variance_info(results.to_frame(), "f1"))
    assert [t.name for t in fig.data] == ["question", "generation", "judge"] and len(fig.data[0].y) == 4
    with pytest.raises(StatsError, match="no variance split of 'exact_match'"):
        results.variance_split("exact_match")
