"""workbench.scoring.metrics: trec_eval-equal retrieval metrics, SQuAD v1.1 answer metrics, ragas non-LLM
metrics, the registry and the bootstrap aggregates."""

from __future__ import annotations

import asyncio
import math
import random
import warnings

import numpy as np
import pytest
import pytrec_eval
from rouge_score import rouge_scorer

from workbench.scoring import catalogue
from workbench.scoring import metrics as m
from workbench.scoring.metrics import (
    doc_ranking,
    exact_match,
    normalize_answer,
    percentile,
    rouge_l,
    string_similarity,
    summarize,
    token_f1,
)
from workbench.scoring.score import missing_inputs, retrieval_metrics, retrieval_metrics_at, score_answer

ANSWER_METRICS = catalogue.names("answer")

# ---------------------------------------------------------------- retrieval: hand-worked


def test_doc_ranking_keeps_each_document_at_its_first_chunk():
    assert doc_ranking(["d2", "d1", "d2", "d3", "d1"]) == ["d2", "d1", "d3"]
    assert doc_ranking([]) == []


def test_retrieval_metrics_hand_worked_binary():
    # relevant: d1, d2. Ranking: x, d1, y, d2 ; k = 3
    got = retrieval_metrics(["x", "d1", "y", "d2"], {"d1": 1, "d2": 1, "z": 0}, k=3)
    assert got["hit_at_k"] == 1.0
    assert got["recall_at_k"] == pytest.approx(0.5)
    assert got["mrr"] == pytest.approx(0.5)
    ideal = 1 + 1 / math.log2(3)
    assert got["ndcg_at_k"] == pytest.approx((1 / math.log2(3)) / ideal)


def test_retrieval_metrics_hand_worked_graded():
    # grades: a=2, b=1. Ranking b, a ; k = 2 → DCG = 1/1 + 2/log2(3); ideal = 2/1 + 1/log2(3)
    got = retrieval_metrics(["b", "a"], {"a": 2, "b": 1}, k=2)
    assert got["ndcg_at_k"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert got["recall_at_k"] == 1.0
    assert got["mrr"] == 1.0


def test_mrr_has_no_cutoff_but_mrr_at_does():
    ranking = ["n1", "n2", "n3", "rel"]
    assert retrieval_metrics(ranking, {"rel": 1}, k=2)["mrr"] == pytest.approx(0.25)
    at = retrieval_metrics_at(ranking, {"rel": 1}, [2, 4])
    assert at["mrr_at_2"] == 0.0
    assert at["mrr_at_4"] == pytest.approx(0.25)
    assert at["hit_at_2"] == 0.0 and at["hit_at_4"] == 1.0


def test_retrieval_counts_chunks_of_one_document_once():
    ranking = doc_ranking(["x", "x", "x", "rel"])  # the relevant doc is at document rank 2
    got = retrieval_metrics(ranking, {"rel": 1}, k=2)
    assert got["hit_at_k"] == 1.0 and got["mrr"] == 0.5
    # duplicates passed straight in are deduplicated the same way
    assert retrieval_metrics(["x", "x", "x", "rel"], {"rel": 1}, k=2) == got


def test_relevant_never_retrieved_scores_zero_and_empty_ranking_too():
    for ranking in (["a", "b"], []):
        got = retrieval_metrics(ranking, {"c": 1}, k=5)
        assert got == {"hit_at_k": 0.0, "recall_at_k": 0.0, "mrr": 0.0, "ndcg_at_k": 0.0}


def test_no_relevant_document_makes_retrieval_metrics_undefined_not_zero():
    got = retrieval_metrics(["a"], {"a": 0, "b": 0}, k=3)
    assert got == {"hit_at_k": None, "recall_at_k": None, "mrr": None, "ndcg_at_k": None}
    at = retrieval_metrics_at(["a"], {}, [1, 10])
    assert set(at) == {f"{name}_at_{c}" for name in ("hit", "recall", "mrr", "ndcg") for c in (1, 10)}
    assert all(v is None for v in at.values())


def test_negative_grades_give_no_gain():
    # trec_eval: grade -1 is not relevant and adds nothing to DCG
    got = retrieval_metrics(["a", "b"], {"a": -1, "b": 2}, k=3)
    assert got["ndcg_at_k"] == pytest.approx(1 / math.log2(3))
    assert got["mrr"] == 0.5


def test_retrieval_at_keys_and_bad_cutoffs():
    at = retrieval_metrics_at(["a"], {"a": 1}, [10, 1, 100])
    assert set(at) == {f"{name}_at_{c}" for name in ("hit", "recall", "mrr", "ndcg") for c in (1, 10, 100)}
    with pytest.raises(ValueError, match="k must be a positive integer"):
        retrieval_metrics(["a"], {"a": 1}, k=0)
    with pytest.raises(ValueError, match="cutoff"):
        retrieval_metrics_at(["a"], {"a": 1}, [5, -1])
    with pytest.raises(ValueError, match="at least one cutoff"):
        retrieval_metrics_at(["a"], {"a": 1}, [])


# ---------------------------------------------------------------- retrieval: equal to pytrec_eval


def _pytrec(ranking: list[str], relevance: dict[str, int], cutoffs: list[int]) -> dict[str, float]:
    # pytrec_eval sorts by score descending (ties: doc id descending): strictly decreasing scores keep our order
    run = {"q": {doc: float(len(ranking) - i) for i, doc in enumerate(ranking)}}
    measures = {"recip_rank"} | {f"{name}_{c}" for name in ("ndcg_cut", "recall", "P", "success") for c in cutoffs}
    evaluator = pytrec_eval.RelevanceEvaluator({"q": relevance}, measures)
    return evaluator.evaluate(run)["q"]


def _random_case(rng: random.Random) -> tuple[list[str], dict[str, int]]:
    pool = [f"d{i:03d}" for i in range(rng.randint(3, 60))]
    n_ret = rng.randint(0, min(len(pool), 30))  # often shorter than k, sometimes empty
    ranking = rng.sample(pool, n_ret)
    judged = rng.sample(pool, rng.randint(1, len(pool)))
    relevance = {doc: rng.choice([0, 0, 1, 2]) for doc in judged}
    if rng.random() < 0.15:  # relevant documents that were never retrieved
        relevance.update({f"unseen{i}": rng.choice([1, 2]) for i in range(rng.randint(1, 3))})
    if not any(g > 0 for g in relevance.values()):
        relevance[rng.choice(pool)] = rng.choice([1, 2])
    return ranking, relevance


def test_random_cases_equal_pytrec_eval():
    rng = random.Random(1234)
    cutoffs = [1, 3, 5, 10, 20]
    seen = {"no_relevant_retrieved": 0, "shorter_than_k": 0, "graded": 0, "unretrieved_relevant": 0}
    for _ in range(400):
        ranking, relevance = _random_case(rng)
        ref = _pytrec(ranking, relevance, cutoffs)
        at = retrieval_metrics_at(ranking, relevance, cutoffs)
        for c in cutoffs:
            assert at[f"ndcg_at_{c}"] == pytest.approx(ref[f"ndcg_cut_{c}"], abs=1e-9), (ranking, relevance, c)
            assert at[f"recall_at_{c}"] == pytest.approx(ref[f"recall_{c}"], abs=1e-9)
            assert at[f"hit_at_{c}"] == float(ref[f"P_{c}"] > 0) == ref[f"success_{c}"]
            single = retrieval_metrics(ranking, relevance, k=c)
            assert single["ndcg_at_k"] == at[f"ndcg_at_{c}"]
            assert single["recall_at_k"] == at[f"recall_at_{c}"]
            assert single["hit_at_k"] == at[f"hit_at_{c}"]
            assert single["mrr"] == pytest.approx(ref["recip_rank"], abs=1e-9)
            expected_mrr_at = ref["recip_rank"] if ref["recip_rank"] >= 1 / c - 1e-12 else 0.0
            assert at[f"mrr_at_{c}"] == pytest.approx(expected_mrr_at, abs=1e-9)
        relevant = {d for d, g in relevance.items() if g > 0}
        seen["no_relevant_retrieved"] += not (relevant & set(ranking))
        seen["shorter_than_k"] += len(ranking) < 20
        seen["graded"] += 2 in relevance.values()
        seen["unretrieved_relevant"] += bool(relevant - set(ranking))
    # the random cases really exercise the edge cases the brief names
    assert all(count >= 20 for count in seen.values()), seen


# ---------------------------------------------------------------- SQuAD v1.1


def test_normalize_answer_follows_squad_v11():
    assert normalize_answer("The Denver Broncos!") == "denver broncos"
    assert normalize_answer("  A  cat,  an apple;   THE end. ") == "cat apple end"
    assert normalize_answer("theatre anathema") == "theatre anathema"  # articles only as whole words
    assert normalize_answer("U.S.-based") == "usbased"  # punctuation removed, not replaced by spaces


def test_exact_match_hand_worked():
    assert exact_match("The Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert exact_match("Carolina", ["Denver Broncos", "the Carolina Panthers", "Carolina"]) == 1.0
    assert exact_match("", ["Denver Broncos"]) == 0.0


def test_token_f1_hand_worked():
    assert token_f1("Broncos of Denver", ["Denver Broncos"]) == pytest.approx(0.8)
    # max over references: 0.8 against the first, 1.0 against the second
    assert token_f1("Broncos of Denver", ["Denver Broncos", "the Broncos of Denver"]) == 1.0
    # Counter overlap: a repeated token counts once per occurrence in both
    p, r = 1 / 3, 1 / 1
    assert token_f1("win win win", ["win"]) == pytest.approx(2 * p * r / (p + r))
    # two of the three reference "win"s are matched: p = 2/2, r = 2/3 (a set overlap would give 0.4)
    assert token_f1("win win", ["win win win"]) == pytest.approx(0.8)
    assert token_f1("", ["Denver Broncos"]) == 0.0
    assert token_f1("Seattle", ["Denver Broncos"]) == 0.0


def test_answer_metrics_without_references_are_none():
    for fn in (exact_match, token_f1, rouge_l, string_similarity):
        assert fn("anything", []) is None
        assert fn("anything", ["", "   "]) is None  # blank cells are not answers
    assert score_answer("x", []) == {name: None for name in ANSWER_METRICS}


# ---------------------------------------------------------------- ragas non-LLM metrics

PAIRS = [
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("Denver Broncos", "The Denver Broncos won Super Bowl 50"),
    ("running quickly", "he runs quick"),  # the stemmer matters
    ("completely unrelated", "Denver Broncos"),
]


def test_rouge_l_equals_rouge_score_directly():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for prediction, reference in PAIRS:
        expected = scorer.score(reference, prediction)["rougeL"].fmeasure
        assert rouge_l(prediction, [reference]) == pytest.approx(expected)
    assert rouge_l("Paris is the capital of France.", ["The capital of France is Paris."]) == pytest.approx(2 / 3)
    assert rouge_l("running quickly", ["he runs quick"]) > 0  # stems match


def test_rouge_l_and_similarity_take_the_max_over_references():
    assert rouge_l("Denver Broncos", ["Carolina Panthers", "Denver Broncos"]) == 1.0
    assert string_similarity("Denver Broncos", ["Carolina Panthers", "Denver Broncos"]) == 1.0


def test_string_similarity_is_one_minus_normalized_levenshtein():
    assert string_similarity("kitten", ["sitting"]) == pytest.approx(1 - 3 / 7)
    assert string_similarity("abc", ["abc"]) == 1.0
    assert string_similarity("", ["abc"]) == 0.0
    assert string_similarity("ABC", ["abc"]) == 0.0  # raw, case-sensitive strings


def test_ragas_metrics_work_inside_a_running_event_loop():
    # Jupyter runs cells inside an event loop, where ragas' own sync score() raises
    async def inside():
        return rouge_l("Denver Broncos", ["Denver Broncos"]), string_similarity("ab", ["abc"])

    assert asyncio.run(inside()) == (1.0, pytest.approx(2 / 3))


def test_ragas_metrics_are_fast_and_quiet():
    import time

    rouge_l("warm", ["up"]), string_similarity("warm", ["up"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        for i in range(1000):
            score_answer(f"answer number {i}", ["the reference answer", "another one"])
        elapsed = time.perf_counter() - start
    assert elapsed < 10, f"1000 score_answer calls took {elapsed:.1f}s"
    assert not caught, [str(w.message) for w in caught]


# ---------------------------------------------------------------- registry


def test_registry_declares_names_inputs_and_functions():
    assert ANSWER_METRICS == ["exact_match", "f1", "rouge_l", "string_similarity"]
    for metric in catalogue.all_metrics("answer"):
        assert metric.needs == frozenset({"reference_answers"})
        assert metric.description and metric.better == "higher"
    assert catalogue.get("f1").fn is token_f1
    with pytest.raises(ValueError, match="unknown input"):
        catalogue.Metric("bad", "answer", "", needs=frozenset({"gold"}), fn=token_f1)


def test_score_answer_computes_every_metric():
    got = score_answer("Broncos of Denver", ["Denver Broncos"])
    assert set(got) == set(ANSWER_METRICS)
    assert got["exact_match"] == 0.0
    assert got["f1"] == pytest.approx(0.8)
    assert 0 < got["rouge_l"] < 1
    assert 0 < got["string_similarity"] < 1


def test_missing_inputs_names_each_skipped_metric_and_why():
    got = missing_inputs({"relevant_ids"})
    assert set(got) == set(ANSWER_METRICS)
    assert got["exact_match"] == "needs reference_answers (the eval set has none)"
    got = missing_inputs({"reference_answers"})
    assert set(got) == {"hit_at_k", "recall_at_k", "mrr", "ndcg_at_k"}
    assert got["mrr"] == "needs relevant_ids (the eval set has none)"
    assert missing_inputs({"reference_answers"}, include_retrieval=False) == {}
    assert missing_inputs({"reference_answers", "relevant_ids", "contexts"}) == {}
    assert len(missing_inputs(set())) == len(ANSWER_METRICS) + 4
    with pytest.raises(ValueError, match="reference_anwsers"):
        missing_inputs({"reference_anwsers"})


# ---------------------------------------------------------------- aggregates


def test_summarize_ignores_none_and_counts_real_values():
    got = summarize([1.0, None, 0.0, None, 1.0, 1.0])
    assert got["n"] == 4
    assert got["mean"] == pytest.approx(0.75)
    assert summarize([None, float("nan"), 0.5])["n"] == 1
    assert summarize([]) == {"mean": None, "n": 0, "ci_low": None, "ci_high": None}
    assert summarize([None, None]) == {"mean": None, "n": 0, "ci_low": None, "ci_high": None}


def test_summarize_ci_contains_the_mean_and_is_deterministic():
    rng = np.random.default_rng(7)
    values = list(rng.random(50))
    a, b = summarize(values), summarize(values)
    assert a == b
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    assert 0 <= a["ci_low"] and a["ci_high"] <= 1
    # one value: no spread
    one = summarize([0.3])
    assert one["ci_low"] == one["mean"] == one["ci_high"] == pytest.approx(0.3)


def test_summarize_matches_a_direct_bootstrap_with_seed_0():
    values = [float(v) for v in np.random.default_rng(11).random(30)]  # continuous: every seed differs
    x = np.asarray(values)
    rng = np.random.default_rng(0)
    means = np.concatenate(
        [x[rng.integers(0, len(x), size=(250, len(x)))].mean(axis=1) for _ in range(2000 // 250)]
    )
    low, high = np.percentile(means, [2.5, 97.5])
    got = summarize(values)
    assert got["ci_low"] == pytest.approx(low) and got["ci_high"] == pytest.approx(high)


def test_summarize_ci_shrinks_as_n_grows():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 200, 2000):
        s = summarize(list(rng.binomial(1, 0.6, size=n).astype(float)))
        widths.append(s["ci_high"] - s["ci_low"])
    assert widths[0] > widths[1] > widths[2] > 0


def test_percentile_is_numpy_linear_and_skips_none():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([10.0, None, 20.0], 95) == pytest.approx(19.5)
    assert percentile([None], 50) is None
    assert percentile([], 95) is None
    with pytest.raises(ValueError, match="q must be between 0 and 100"):
        percentile([1.0], 150)
