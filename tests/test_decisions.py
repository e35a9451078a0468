"""Decisions you can trust (issue 15): the leader's comparisons corrected for their number, the tied set
the tie-break chooses from, and the Pareto view's tied column. Synthetic question frames (the statistics
are the unit); the simulations that check the error rates are in experiments/benchmarks/stats_check.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.analysis.family import CORRECTIONS, adjust, leader_tests
from workbench.analysis.stats import StatsError, best
from tests.test_stats import frame_from, questions_frame, vid


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
    for seed in range(200):  # find data where the raw test rejects and Holm does not: both outcomes asserted
        q = near_tie(n=30, seed=seed, gaps=(0.0, 0.05, 0.06))
        frame = frame_from(q, cost_usd_per_1k={"a": 1.0, "b": 0.5, "c": 0.1})
        raw, holm = best(frame, q, "f1", correction="none"), best(frame, q, "f1")
        if frame["f1"].idxmax() == vid("a") and raw.tied == [vid("a")] and holm.tied != [vid("a")]:
            break
    else:
        pytest.fail("no seed where Holm changes the decision")
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
