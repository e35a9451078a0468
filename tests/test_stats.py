"""workbench.analysis.stats: per-variant CIs, paired differences with a sign-flip permutation test,
Pareto fronts, constraints and the choice of a winner. The statistics are the unit, so the
question frames here are synthetic, shaped like `SweepResults.questions()` / `to_frame()`."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from workbench.errors import WorkbenchError
from workbench.scoring.metrics import summarize
from workbench.analysis.stats import (
    Decision,
    PairedDiff,
    StatsError,
    best,
    compare,
    paired_diff,
    pareto_front,
    parse_constraint,
    score_columns,
)


def vid(name: str) -> str:
    """A 12-hex short hash standing for a variant, e.g. vid('a') == 'aaaaaaaaaaaa'."""
    return name * 12


def questions_frame(scores: dict[str, list], metric: str = "f1", errors: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """One row per (variant, question) with the columns results.questions() has."""
    rows = []
    for name, values in scores.items():
        for i, value in enumerate(values):
            error = (errors or {}).get((name, i))
            rows.append(
                {
                    "variant": vid(name),
                    "variant_hash": name * 64,
                    "question_id": f"q{i}",
                    "question": f"question {i}?",
                    "answer": f"answer {name}{i}",
                    "reference_answers": [f"ref {i}"],
                    "contexts": ["ctx"],
                    "error": error,
                    metric: value,
                    "latency_total_s": 0.1,
                }
            )
    return pd.DataFrame(rows)


def frame_from(questions: pd.DataFrame, metric: str = "f1", **extra: dict[str, float]) -> pd.DataFrame:
    """A to_frame()-like frame: the metric's mean/CI/n per variant plus extra columns {col: {name: value}}."""
    records = []
    for v in dict.fromkeys(questions["variant"]):
        ok = questions[(questions["variant"] == v) & questions["error"].isna()]
        s = summarize(ok[metric].tolist())
        rec = {"variant": v, "label": f"variant {v[0]}", metric: s["mean"], f"{metric}_ci_low": s["ci_low"],
               f"{metric}_ci_high": s["ci_high"], f"{metric}_n": float(s["n"])}
        for col, by_name in extra.items():
            rec[col] = by_name.get(v[0], np.nan)
        records.append(rec)
    return pd.DataFrame(records).set_index("variant")


# ---------------------------------------------------------------- compare


def test_compare_gives_mean_ci_and_n_per_variant_best_first_leaving_out_none_and_failed_cells():
    q = questions_frame({"a": [1.0, 0.0, None, 0.5], "b": [1.0, 1.0, 0.5, 0.9]}, errors={("b", 3): "timeout"})
    out = compare(q, "f1")
    assert list(out.index) == [vid("b"), vid("a")]
    assert list(out.columns) == ["mean", "ci_low", "ci_high", "n"]
    assert out.loc[vid("a"), "mean"] == pytest.approx(0.5)
    assert out.loc[vid("a"), "n"] == 3
    assert out.loc[vid("b"), "mean"] == pytest.approx(2.5 / 3)  # the failed cell's 0.9 is not counted
    assert out.loc[vid("b"), "n"] == 3
    expected = summarize([1.0, 0.0, 0.5])
    assert out.loc[vid("a"), "ci_low"] == pytest.approx(expected["ci_low"])
    assert out.loc[vid("a"), "ci_high"] == pytest.approx(expected["ci_high"])


def test_compare_puts_a_variant_without_scores_last_with_n_zero():
    q = questions_frame({"a": [None, None], "b": [0.2, 0.4]})
    out = compare(q, "f1")
    assert list(out.index) == [vid("b"), vid("a")]
    assert out.loc[vid("a"), "n"] == 0
    assert np.isnan(out.loc[vid("a"), "mean"])


def test_compare_unknown_metric_names_it_and_lists_the_available_ones():
    q = questions_frame({"a": [1.0]})
    with pytest.raises(StatsError, match=r"unknown metric 'f2'.*f1.*latency_total_s") as err:
        compare(q, "f2")
    assert isinstance(err.value, ValueError) and isinstance(err.value, WorkbenchError)
    with pytest.raises(StatsError, match="unknown metric 'answer'"):
        compare(q, "answer")  # a text column is not a score


def test_score_columns_are_the_numeric_ones_including_all_none_judge_columns():
    q = questions_frame({"a": [1.0, 0.5]})
    q["faithfulness"] = [None, None]
    assert score_columns(q) == ["f1", "latency_total_s", "faithfulness"]


def test_bootstrap_ci_shrinks_with_more_questions():
    rng = np.random.default_rng(1)
    small = compare(questions_frame({"a": list(rng.uniform(0, 1, 10))}), "f1").iloc[0]
    large = compare(questions_frame({"a": list(rng.uniform(0, 1, 400))}), "f1").iloc[0]
    assert small["ci_low"] < small["mean"] < small["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 3


# ---------------------------------------------------------------- paired_diff


def test_paired_diff_pairs_by_question_and_enumerates_the_exact_p_value():
    # q3 has no score for a: left out. Diffs on q0..q2 are [1, 0, 0.25]; of the 8 sign patterns the
    # |sum| reaches 1.25 for (+,±,+) and (-,±,-): 4 of 8.
    q = questions_frame({"a": [1.0, 0.5, 0.25, None], "b": [0.0, 0.5, 0.0, 1.0]})
    d = paired_diff(q, vid("a"), vid("b"), "f1")
    assert isinstance(d, PairedDiff)
    assert (d.a, d.b, d.metric, d.n) == (vid("a"), vid("b"), "f1", 3)
    assert d.mean_a == pytest.approx(1.75 / 3)
    assert d.mean_b == pytest.approx(0.5 / 3)
    assert d.mean_diff == pytest.approx(1.25 / 3)
    assert d.p_value == pytest.approx(4 / 8)
    assert "exact" in d.test and "2^3" in d.test


def test_exact_p_value_of_four_equal_differences_is_two_sixteenths():
    q = questions_frame({"a": [1.0] * 4, "b": [0.0] * 4})
    d = paired_diff(q, vid("a"), vid("b"), "f1")
    assert d.p_value == pytest.approx(2 / 16)
    assert d.ci_low == d.ci_high == pytest.approx(1.0)


def test_exact_p_value_matches_a_brute_force_enumeration():
    diffs = np.array([0.3, -0.1, 0.4, 0.2, 0.0, 0.25, -0.05])
    q = questions_frame({"a": list(0.5 + diffs), "b": [0.5] * len(diffs)})
    observed = abs(diffs.sum())
    count = sum(abs(np.dot(s, diffs)) >= observed - 1e-12 for s in itertools.product([-1, 1], repeat=len(diffs)))
    assert paired_diff(q, vid("a"), vid("b"), "f1").p_value == pytest.approx(count / 2 ** len(diffs))


def test_above_sixteen_questions_the_p_value_comes_from_random_sign_flips():
    q = questions_frame({"a": [1.0] * 17, "b": [0.0] * 17})
    d = paired_diff(q, vid("a"), vid("b"), "f1", n_resamples=1000, seed=3)
    assert "1000 random sign flips" in d.test
    assert d.p_value == pytest.approx(1 / 1001)  # (count + 1) / (resamples + 1) with count 0
    assert paired_diff(q, vid("a"), vid("b"), "f1", n_resamples=1000, seed=3) == d  # same seed, same result


def test_identical_variants_are_not_significantly_different():
    values = list(np.random.default_rng(2).uniform(0, 1, 30))
    q = questions_frame({"a": values, "b": values})
    d = paired_diff(q, vid("a"), vid("b"), "f1")
    assert d.mean_diff == 0.0
    assert d.p_value == pytest.approx(1.0)
    assert d.ci_low <= 0.0 <= d.ci_high
    assert not d.significant()


def test_differences_that_cancel_give_p_one_and_a_ci_around_zero():
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.8, 40)
    noise = rng.uniform(0, 0.2, 20)
    shift = np.concatenate([noise, -noise])  # mean difference exactly 0
    q = questions_frame({"a": list(base + shift), "b": list(base)})
    d = paired_diff(q, vid("a"), vid("b"), "f1")
    assert d.mean_diff == pytest.approx(0.0, abs=1e-12)
    assert d.p_value > 0.9
    assert d.ci_low < 0.0 < d.ci_high


def test_a_clearly_better_variant_is_significant_and_its_ci_excludes_zero():
    rng = np.random.default_rng(5)
    b = rng.uniform(0.2, 0.6, 40)
    a = b + 0.3 + rng.normal(0, 0.1, 40)
    q = questions_frame({"a": list(a), "b": list(b)})
    d = paired_diff(q, vid("a"), vid("b"), "f1")
    assert d.n == 40
    assert d.p_value < 0.01
    assert 0.2 < d.ci_low < d.mean_diff < d.ci_high < 0.4
    reverse = paired_diff(q, vid("b"), vid("a"), "f1")
    assert reverse.mean_diff == pytest.approx(-d.mean_diff)
    assert reverse.ci_high < 0


def test_paired_diff_accepts_full_hashes_and_prefixes_and_rejects_ambiguous_ones():
    q = questions_frame({"a": [1.0, 0.0], "b": [0.0, 0.0]})
    q2 = pd.concat([q, questions_frame({"ab": [0.5, 0.5]}).assign(variant="aabbaabbaabb", variant_hash="aabb" * 16)])
    assert paired_diff(q, "a" * 64, "bbb", "f1").a == vid("a")
    assert paired_diff(q2, vid("a"), "aab", "f1").b == "aabbaabbaabb"
    with pytest.raises(StatsError, match=r"variant 'aa' matches 2 variants; known: aaaaaaaaaaaa, bbbbbbbbbbbb, aabbaabbaabb"):
        paired_diff(q2, "aa", vid("b"), "f1")
    with pytest.raises(StatsError, match="variant 'zz' matches 0 variants"):
        paired_diff(q, "zz", vid("b"), "f1")


def test_failed_cells_are_left_out_of_the_pairing():
    q = questions_frame({"a": [1.0, 1.0, 1.0], "b": [0.0, 0.0, 0.0]}, errors={("a", 0): "HTTP 500"})
    assert paired_diff(q, vid("a"), vid("b"), "f1").n == 2


def test_variants_sharing_no_scored_question_raise_a_clear_error():
    q = questions_frame({"a": [1.0, None], "b": [None, 0.5]})
    with pytest.raises(StatsError, match="share no scored question"):
        paired_diff(q, vid("a"), vid("b"), "f1")


# ---------------------------------------------------------------- pareto_front


def test_pareto_front_drops_dominated_keeps_ties_and_leaves_out_nan():
    frame = pd.DataFrame(
        {
            "f1": [0.5, 0.4, 0.6, 0.5, 0.9, 0.5],
            "latency_total_p95_s": [1.0, 2.0, 3.0, 1.0, np.nan, 1.5],
        },
        index=["a", "b", "c", "tie_a", "nan", "same_f1_slower"],
    )
    assert pareto_front(frame, {"f1": "max", "latency_total_p95_s": "min"}) == ["a", "c", "tie_a"]
    # Flip the latency goal: now slow is good, so c (best f1, slowest) dominates everything
    assert pareto_front(frame, {"f1": "max", "latency_total_p95_s": "max"}) == ["c"]


def test_pareto_front_errors_name_the_bad_column_or_goal():
    frame = pd.DataFrame({"f1": [0.5]}, index=["a"])
    with pytest.raises(StatsError, match="unknown objective column 'cost'.*f1"):
        pareto_front(frame, {"cost": "min"})
    with pytest.raises(StatsError, match="goal 'lowest'"):
        pareto_front(frame, {"f1": "lowest"})
    with pytest.raises(StatsError, match="objectives is empty"):
        pareto_front(frame, {})


# ---------------------------------------------------------------- parse_constraint


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("<= 2", ("<=", 2.0)),
        ("<=2", ("<=", 2.0)),
        (">= 0.5", (">=", 0.5)),
        ("< 1e-3", ("<", 0.001)),
        ("> -1", (">", -1.0)),
        ("== 3", ("==", 3.0)),
        ("2.5", ("<=", 2.5)),
        (2, ("<=", 2.0)),
        (0.25, ("<=", 0.25)),
        (("<", 3), ("<", 3.0)),
        ([">=", 0.1], (">=", 0.1)),
    ],
)
def test_parse_constraint_accepts_the_documented_forms(spec, expected):
    assert parse_constraint(spec) == expected


@pytest.mark.parametrize("spec", ["<< 2", "=< 2", "fast", "", None, True, ("=<", 2), ("<=", "2"), ("<=",), float("nan")])
def test_parse_constraint_rejects_others_naming_the_value(spec):
    with pytest.raises(StatsError, match=re.escape(repr(spec))):
        parse_constraint(spec)


# ---------------------------------------------------------------- best


@pytest.fixture
def three_variants():
    """a: best f1 but slow; b: clearly better than c; c: worst. 40 questions each."""
    rng = np.random.default_rng(7)
    c = rng.uniform(0.1, 0.4, 40)
    b = c + 0.2 + rng.normal(0, 0.05, 40)
    a = b + 0.2 + rng.normal(0, 0.05, 40)
    q = questions_frame({"a": list(a), "b": list(b), "c": list(c)})
    frame = frame_from(
        q,
        latency_total_p95_s={"a": 2.4, "b": 1.0, "c": 1.5},
        cost_usd_per_1k={"a": 0.0, "b": 0.0, "c": 0.0},
    )
    return q, frame


def test_best_picks_a_significantly_better_top_and_says_why(three_variants):
    q, frame = three_variants
    d = best(frame, q, "f1")
    assert isinstance(d, Decision)
    assert (d.winner, d.runner_up, d.objective, d.significant) == (vid("a"), vid("b"), "f1", True)
    assert d.candidates == [vid("a"), vid("b"), vid("c")] and d.excluded == {}
    assert d.diff is not None and d.diff.p_value < 0.05 and d.diff.n == 40
    assert re.fullmatch(r"f1 0\.\d+ vs 0\.\d+ for runner-up bbbbbbbbbbbb \(paired permutation test p=[0-9.e-]+, n=40; "
                        r"Holm over 3 pairwise tests p=[0-9.e-]+\); tied set: aaaaaaaaaaaa alone, significantly better "
                        r"than each of the other 2 candidates", d.reason), d.reason
    assert d.tied == [vid("a")] and d.tests is not None and d.tests.pairs == 3
    assert f"f1 {frame.at[vid('a'), 'f1']:.3g} vs {frame.at[vid('b'), 'f1']:.3g}" in d.reason


def test_a_constraint_excludes_the_top_variant_with_the_reason(three_variants):
    q, frame = three_variants
    d = best(frame, q, "f1", {"latency_total_p95_s": "<= 2"})
    assert d.excluded == {vid("a"): "latency_total_p95_s 2.4 > 2"}
    assert (d.winner, d.runner_up, d.significant) == (vid("b"), vid("c"), True)
    assert d.candidates == [vid("b"), vid("c")]
    assert d.reason.endswith("; 1 excluded by the constraints")


def test_a_constraint_on_a_missing_value_excludes_with_that_reason(three_variants):
    q, frame = three_variants
    frame = frame.assign(cost_usd_per_1k=[np.nan, 0.5, 0.5])
    d = best(frame, q, "f1", {"cost_usd_per_1k": 1})
    assert d.excluded == {vid("a"): "cost_usd_per_1k is unknown (NaN), so <= 1 cannot be checked"}
    assert d.winner == vid("b")


def test_nothing_left_raises_listing_why_each_variant_was_excluded(three_variants):
    q, frame = three_variants
    with pytest.raises(StatsError, match="no variant meets the constraints") as err:
        best(frame, q, "f1", {"latency_total_p95_s": "< 1", "f1_n": ">= 50"})
    message = str(err.value)
    for v, why in [("a", "latency_total_p95_s 2.4 >= 1"), ("b", "latency_total_p95_s 1 >= 1"), ("c", "latency_total_p95_s 1.5 >= 1")]:
        assert f"\n  {vid(v)}: {why}" in message
    with pytest.raises(StatsError, match=r"(?s)no variant meets the constraints:\n.*f1_n 40 < 50"):
        best(frame, q, "f1", {"f1_n": ">= 50"})


def test_unknown_columns_are_errors_listing_the_available_ones(three_variants):
    q, frame = three_variants
    with pytest.raises(StatsError, match="constraint on unknown column 'p95'.*latency_total_p95_s"):
        best(frame, q, "f1", {"p95": "<= 2"})
    with pytest.raises(StatsError, match="unknown objective 'f2'.*f1"):
        best(frame, q, "f2")
    with pytest.raises(StatsError, match="constraint on latency_total_p95_s: constraint 'fast'"):
        best(frame, q, "f1", {"latency_total_p95_s": "fast"})


def test_not_significantly_better_chooses_the_cheaper_variant_and_says_so():
    rng = np.random.default_rng(11)
    base = rng.uniform(0.3, 0.7, 30)
    a = base + rng.normal(0.03, 0.1, 30)  # a and b: same quality up to noise
    b = base + rng.normal(0.0, 0.1, 30)
    c = base - 0.3  # clearly worse, and the cheapest: must not win
    q = questions_frame({"a": list(a), "b": list(b), "c": list(c)})
    frame = frame_from(q, cost_usd_per_1k={"a": 2.0, "b": 0.5, "c": 0.1}, latency_total_p95_s={"a": 1.0, "b": 1.0, "c": 1.0})
    assert frame.at[vid("a"), "f1"] > frame.at[vid("b"), "f1"]  # a is the top on f1
    d = best(frame, q, "f1")
    assert (d.winner, d.runner_up, d.significant) == (vid("b"), vid("b"), False)
    assert d.diff is not None and d.diff.p_value >= 0.05
    assert d.reason.startswith(f"{vid('a')} is not significantly better than runner-up {vid('b')} on f1 (")
    assert f"paired permutation test p={d.diff.p_value:.2g}, n=30; Holm over 3 pairwise tests p=" in d.reason
    assert d.tied == [vid("a"), vid("b")]  # c is clearly worse: out of the tied set, so its low cost does not count
    assert f"; tied set: {vid('a')}, {vid('b')} (not significantly worse than {vid('a')}); chose the cheaper {vid('b')} (cost_usd_per_1k 0.5 vs 2; f1 " in d.reason
    assert d.reason.endswith("among the 2 tied variants")


def test_not_significant_with_equal_cost_chooses_the_faster_variant():
    values = list(np.random.default_rng(12).uniform(0, 1, 20))
    q = questions_frame({"a": values, "b": values})
    frame = frame_from(q, cost_usd_per_1k={"a": 0.0, "b": 0.0}, latency_total_p95_s={"a": 3.0, "b": 1.2})
    d = best(frame, q, "f1")
    assert d.winner == vid("b") and d.significant is False
    assert f"chose the faster {vid('b')} (latency_total_p95_s 1.2 vs 3;" in d.reason


def test_not_significant_but_the_top_is_also_cheapest_keeps_the_top():
    values = np.random.default_rng(13).uniform(0, 1, 20)
    noise = np.random.default_rng(15).normal(0.01, 0.1, 20)
    q = questions_frame({"a": list(values + noise), "b": values})
    frame = frame_from(q, cost_usd_per_1k={"a": 0.1, "b": 0.5})
    d = best(frame, q, "f1")
    assert d.winner == vid("a") and d.significant is False
    assert d.reason.endswith(f"kept {vid('a')}: it is also the cheapest of the 2 tied variants (cost_usd_per_1k 0.1)")


def test_nan_tie_break_values_come_last():
    values = list(np.random.default_rng(14).uniform(0, 1, 20))
    q = questions_frame({"a": values, "b": values, "c": values})
    frame = frame_from(q, cost_usd_per_1k={"a": np.nan, "c": 0.3})  # b has no cost either
    assert best(frame, q, "f1").winner == vid("c")


def test_an_objective_without_per_question_values_is_ranked_untested():
    q = questions_frame({"a": [0.5, 0.5], "b": [0.5, 0.5]})
    frame = frame_from(q, latency_total_p95_s={"a": 2.0, "b": 1.0})
    d = best(frame, q, "latency_total_p95_s", maximize=False)
    assert (d.winner, d.runner_up, d.significant, d.diff) == (vid("b"), vid("a"), None, None)
    assert d.reason == f"latency_total_p95_s 1 vs 2 for runner-up {vid('a')}; no per-question latency_total_p95_s to test the difference"


def test_a_single_candidate_wins_without_a_test(three_variants):
    q, frame = three_variants
    d = best(frame, q, "f1", {"latency_total_p95_s": "<= 1"})
    assert (d.winner, d.runner_up, d.significant, d.diff) == (vid("b"), None, None, None)
    assert d.reason.startswith("f1 ") and "the only variant meeting the constraints; 2 excluded by the constraints" in d.reason


def test_a_violation_close_to_the_bound_shows_enough_digits():
    q = questions_frame({"a": [0.5], "b": [0.4]})
    frame = frame_from(q, latency_total_p95_s={"a": 2.0004, "b": 1.0})
    assert best(frame, q, "f1", {"latency_total_p95_s": 2}).excluded == {vid("a"): "latency_total_p95_s 2.0004 > 2"}
