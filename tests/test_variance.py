"""Repeats (issue 15): the variance split, the hierarchical bootstrap, a variant's aggregates with
repeats, and the power of a paired comparison. Small synthetic data; the 1,000-sweep simulations that
check coverage, error rates and power are experiments/benchmarks/stats_check.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.paired import StatsError
from workbench.analysis.power import detectable, plan, power_at, questions_needed, too_small
from workbench.scoring.aggregate import aggregate, direction
from workbench.scoring.metrics import summarize
from workbench.scoring.variance import has_repeats, hierarchical_bootstrap, long_frame, variance_split


def simulated(rng, n, r, m, sd_q=0.2, sd_g=0.1, sd_j=0.05, mean=0.5, variant="a") -> pd.DataFrame:
    q = rng.normal(0, sd_q, (n, 1, 1))
    g = rng.normal(0, sd_g, (n, r, 1))
    j = rng.normal(0, sd_j, (n, r, m))
    scores = mean + q + g + j
    qi, ri, ji = np.meshgrid(np.arange(n), np.arange(r), np.arange(m), indexing="ij")
    return pd.DataFrame({"variant": variant, "question": qi.ravel(), "repeat": ri.ravel(), "judge_pass": ji.ravel(),
                         "score": scores.ravel()})


def test_balanced_split_equals_the_nested_anova_estimators():
    rng = np.random.default_rng(1)
    n, r, m = 6, 3, 2
    long = simulated(rng, n, r, m)
    y = long["score"].to_numpy().reshape(n, r, m)
    ms_judge = ((y - y.mean(axis=2, keepdims=True)) ** 2).sum() / (n * r * (m - 1))
    ms_gen = m * ((y.mean(axis=2) - y.mean(axis=(1, 2))[:, None]) ** 2).sum() / (n * (r - 1))
    ms_q = r * m * ((y.mean(axis=(1, 2)) - y.mean()) ** 2).sum() / (n - 1)
    got = variance_split(long).loc["a"]
    assert got["var_judge"] == pytest.approx(ms_judge)
    assert got["var_generation"] == pytest.approx(max((ms_gen - ms_judge) / m, 0))
    assert got["var_question"] == pytest.approx(max((ms_q - ms_gen) / (r * m), 0))
    assert (got["questions"], got["repeats"], got["judge_passes"]) == (6, 3, 2)


def test_the_split_recovers_known_components_on_a_large_sample():
    got = variance_split(simulated(np.random.default_rng(2), 400, 3, 3)).loc["a"]
    for name, truth in {"var_question": 0.04, "var_generation": 0.01, "var_judge": 0.0025}.items():
        assert abs(got[name] - truth) / truth < 0.2, (name, got[name])


def test_levels_with_one_draw_are_not_separable():
    one = variance_split(simulated(np.random.default_rng(3), 30, 1, 1)).loc["a"]
    assert one["var_question"] > 0 and math.isnan(one["var_generation"]) and math.isnan(one["var_judge"])
    no_judge = variance_split(simulated(np.random.default_rng(3), 30, 3, 1)).loc["a"]
    assert no_judge["var_generation"] > 0 and math.isnan(no_judge["var_judge"])
    assert not has_repeats(simulated(np.random.default_rng(3), 5, 1, 1))


def test_one_answer_per_question_bootstraps_exactly_like_summarize():
    long = simulated(np.random.default_rng(4), 25, 1, 1)
    ci = hierarchical_bootstrap(long).loc["a"]
    s = summarize(long["score"].tolist())
    assert (ci["mean"], ci["ci_low"], ci["ci_high"], ci["n"]) == pytest.approx((s["mean"], s["ci_low"], s["ci_high"], 25))


def test_resampling_answers_too_widens_the_interval_when_generation_is_noisy():
    long = simulated(np.random.default_rng(5), 30, 2, 1, sd_q=0.05, sd_g=0.3, sd_j=0.0)
    two, one = hierarchical_bootstrap(long).loc["a"], hierarchical_bootstrap(long, within=False).loc["a"]
    assert two["mean"] == one["mean"] and two["n"] == 30
    assert (two["ci_high"] - two["ci_low"]) > 1.1 * (one["ci_high"] - one["ci_low"])


def rows_from(long: pd.DataFrame, metric: str = "f1") -> list[dict]:
    """Result rows as the runner writes them with repeats: one per (question, repeat), judge passes listed."""
    rows = []
    for (q, rep), g in long.groupby(["question", "repeat"]):
        passes = g["score"].tolist()
        rows.append({"variant_hash": "a" * 64, "variant": "a" * 12, "question_id": f"q{q}", "question": "?", "repeat": int(rep),
                     "error": None, metric: float(np.mean(passes)), f"{metric}_passes": passes})
    return rows


def test_aggregates_with_repeats_carry_the_split_and_count_questions():
    long = simulated(np.random.default_rng(6), 20, 3, 2)
    rows = rows_from(long)
    assert long_frame(rows, "f1")["score"].tolist() == pytest.approx(long.sort_values(["question", "repeat", "judge_pass"])["score"].tolist())
    agg = aggregate(rows)
    split = variance_split(long).loc["a"]
    assert agg["f1_n"] == 20 and agg["questions"] == 60  # 20 questions, 60 answers
    for c in ("var_question", "var_generation", "var_judge"):
        assert agg[f"f1_{c}"] == pytest.approx(split[c])
        assert direction(f"f1_{c}") == "min"
    plain = aggregate([{k: v for k, v in r.items() if k not in ("repeat", "f1_passes")} for r in rows if r["repeat"] == 0])
    assert not any("_var_" in k for k in plain) and plain["f1_n"] == 20


def paired_questions(rng, n, gap, sd=0.14, r=1) -> pd.DataFrame:
    base = rng.uniform(0.3, 0.7, n)
    rows = []
    for v, shift in (("a", gap), ("b", 0.0)):
        for rep in range(r):
            for i, value in enumerate(base + shift + rng.normal(0, sd, n)):
                rows.append({"variant": v, "question_id": f"q{i}", "repeat": rep, "error": None, "f1": value})
    return pd.DataFrame(rows)


def test_questions_needed_matches_the_normal_approximation_plus_the_t_correction():
    z = (1.959964 + 0.841621) ** 2
    n = questions_needed(0.2, 0.05)
    assert z * 16 < n <= z * 16 + 3  # 125.6 by the normal formula; the t-test asks for a couple more
    assert power_at(0.2, 0.05, n) == pytest.approx(0.8, abs=0.01)
    assert detectable(0.2, n) == pytest.approx(0.05, rel=0.02)
    with pytest.raises(StatsError, match="delta must be a positive difference"):
        questions_needed(0.2, 0)


def test_plan_reads_the_observed_variance_and_trades_repeats_for_questions():
    q = paired_questions(np.random.default_rng(7), 40, 0.05, r=3)
    p = plan(q, "a", "b", "f1", 0.05)
    assert p.n_have == 40 and p.repeats_have == 3 and 0 < p.power_now < 1
    assert list(p.by_repeats) == [1, 2, 3, 5]
    assert p.by_repeats[1] > p.by_repeats[3] > p.by_repeats[5] and abs(p.by_repeats[3] - p.questions) <= 0.2 * p.questions
    assert p.statement().startswith("to detect a f1 difference of 0.05 between a and b at 80% power (alpha 0.05) needs")
    assert "with repeats: 1 -> " in p.statement()


def test_too_small_warns_only_when_the_gap_is_underpowered():
    small = paired_questions(np.random.default_rng(8), 15, 0.03)
    warning = too_small(small, ["a", "b"], "f1")
    assert warning and warning.startswith("the eval set is too small to separate the top two on f1: 15 questions detect")
    assert "(workbench plan)" in warning
    clear = paired_questions(np.random.default_rng(8), 60, 0.3)
    assert too_small(clear, ["a", "b"], "f1") is None


def test_compare_counts_a_repeated_question_once():
    from workbench.analysis.stats import compare

    long = simulated(np.random.default_rng(9), 10, 3, 1)
    q = pd.DataFrame({"variant": "a", "question_id": long["question"].map(lambda i: f"q{i}"), "f1": long["score"]})
    row = compare(q, "f1").loc["a"]
    assert row["n"] == 10 and row["mean"] == pytest.approx(long["score"].mean())
    assert row["ci_low"] == pytest.approx(hierarchical_bootstrap(long).loc["a", "ci_low"])
    read_back = [{"question_id": "q1", "repeat": float("nan"), "f1": 0.5}, {"question_id": "q1", "repeat": 1.0, "f1": 0.7}]
    assert long_frame(read_back, "f1")["repeat"].tolist() == [0, 1]  # a table's NaN / float repeat
