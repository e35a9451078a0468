"""Metrics: retrieval (trec_eval definitions), answers without an LLM, and aggregates.

Pure core: no MLflow, no files, no network. Every metric declares the inputs it needs
(`reference_answers`, `relevant_ids`, `contexts`); a metric whose inputs are missing is skipped
with a stated reason (`missing_inputs`), never scored 0. Per-question values are `float | None`:
None means "not defined for this question" and aggregates leave it out (`summarize` reports n).

Retrieval works on documents, not chunks: `doc_ranking` turns the retrieved chunks' document ids
into a document ranking (a document counts at the rank of its first chunk), then
`retrieval_metrics` scores that ranking against graded relevance judgements with trec_eval's
definitions (checked against pytrec_eval in the tests).

>>> ranking = doc_ranking(["d3", "d3", "d1", "d7"])
>>> ranking
['d3', 'd1', 'd7']
>>> retrieval_metrics(ranking, {"d1": 1}, k=2)["mrr"]
0.5
>>> exact_match("The Denver Broncos!", ["Denver Broncos"])
1.0
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from workbench.sync import run_coroutine

# The inputs a metric can need, named as the eval set's columns.
INPUTS = frozenset({"reference_answers", "relevant_ids", "contexts"})

# ---------------------------------------------------------------- retrieval (document level)


def doc_ranking(chunk_doc_ids: Sequence[str]) -> list[str]:
    """Document ranking from the retrieved chunks' document ids, best first.

    A document counts once, at the rank where its first chunk appears.

    >>> doc_ranking(["a", "b", "a", "c", "b"])
    ['a', 'b', 'c']
    """
    return list(dict.fromkeys(chunk_doc_ids))


def _check_cutoff(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")


def _relevant_gains(relevance: Mapping[str, int]) -> dict[str, float]:
    """Judged documents with a positive grade. trec_eval counts grade >= 1 as relevant and gives
    negative grades no gain."""
    return {doc: float(grade) for doc, grade in relevance.items() if grade > 0}


def _dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def _scores_at(ranking: list[str], gains: dict[str, float], k: int) -> dict[str, float]:
    top = ranking[:k]
    gains_top = [gains.get(doc, 0.0) for doc in top]
    n_rel_top = sum(1 for g in gains_top if g > 0)
    ideal = _dcg(sorted(gains.values(), reverse=True)[:k])
    return {
        "hit": 1.0 if n_rel_top else 0.0,
        "recall": n_rel_top / len(gains),
        "ndcg": _dcg(gains_top) / ideal,
    }


def _recip_rank(ranking: list[str], gains: dict[str, float], cutoff: int | None = None) -> float:
    for rank, doc in enumerate(ranking if cutoff is None else ranking[:cutoff], start=1):
        if doc in gains:
            return 1.0 / rank
    return 0.0


def retrieval_metrics(
    ranked_doc_ids: Sequence[str], relevance: Mapping[str, int], k: int
) -> dict[str, float | None]:
    """hit_at_k, recall_at_k, mrr and ndcg_at_k of one ranking, with trec_eval's definitions.

    `relevance` maps document ids to graded judgements (0 = judged not relevant, 1, 2, … relevant).
    nDCG uses gain = grade and discount log2(rank + 1), the ideal built from every relevant judged
    document (trec_eval `ndcg_cut`); recall = relevant in the top k / all relevant (`recall_k`);
    mrr = 1 / rank of the first relevant document anywhere in the ranking (`recip_rank`, no cut-off);
    hit = any relevant in the top k (`P_k > 0`). A repeated id counts at its first rank.

    When no document is relevant (no grade > 0) the metrics are undefined and every value is None
    (pytrec_eval would report 0.0; we leave such questions out of the means instead).

    >>> retrieval_metrics(["x", "d1", "y"], {"d1": 1, "d2": 1}, k=3)
    {'hit_at_k': 1.0, 'recall_at_k': 0.5, 'mrr': 0.5, 'ndcg_at_k': 0.38685280723454163}
    """
    _check_cutoff(k)
    ranking = doc_ranking(ranked_doc_ids)
    gains = _relevant_gains(relevance)
    if not gains:
        return {"hit_at_k": None, "recall_at_k": None, "mrr": None, "ndcg_at_k": None}
    at = _scores_at(ranking, gains, k)
    return {
        "hit_at_k": at["hit"],
        "recall_at_k": at["recall"],
        "mrr": _recip_rank(ranking, gains),
        "ndcg_at_k": at["ndcg"],
    }


def retrieval_metrics_at(
    ranked_doc_ids: Sequence[str], relevance: Mapping[str, int], cutoffs: Sequence[int]
) -> dict[str, float | None]:
    """hit_at_N, recall_at_N, mrr_at_N and ndcg_at_N for every cutoff N.

    mrr_at_N = 1 / rank of the first relevant document if it is within the top N, else 0.
    Every value is None when no document is relevant (see `retrieval_metrics`).

    >>> retrieval_metrics_at(["x", "d1"], {"d1": 1}, [1, 10])["mrr_at_10"]
    0.5
    """
    if not cutoffs:
        raise ValueError("cutoffs must name at least one cutoff, e.g. [1, 5, 10]")
    for c in cutoffs:
        _check_cutoff(c, "each cutoff")
    ranking = doc_ranking(ranked_doc_ids)
    gains = _relevant_gains(relevance)
    out: dict[str, float | None] = {}
    for c in sorted(set(cutoffs)):
        if not gains:
            out.update({f"hit_at_{c}": None, f"recall_at_{c}": None, f"mrr_at_{c}": None, f"ndcg_at_{c}": None})
            continue
        at = _scores_at(ranking, gains, c)
        out[f"hit_at_{c}"] = at["hit"]
        out[f"recall_at_{c}"] = at["recall"]
        out[f"mrr_at_{c}"] = _recip_rank(ranking, gains, cutoff=c)
        out[f"ndcg_at_{c}"] = at["ndcg"]
    return out


RETRIEVAL_METRICS: dict[str, str] = {
    "hit_at_k": "1 if any relevant document is in the top k, else 0",
    "recall_at_k": "relevant documents in the top k / all relevant documents",
    "mrr": "1 / rank of the first relevant document (trec_eval recip_rank)",
    "ndcg_at_k": "graded nDCG over the top k (trec_eval ndcg_cut)",
}
RETRIEVAL_REQUIRES = frozenset({"relevant_ids"})

# ---------------------------------------------------------------- SQuAD v1.1 answer metrics

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, drop punctuation, drop the articles
    a/an/the as whole words, collapse whitespace.

    >>> normalize_answer("The  Denver Broncos!")
    'denver broncos'
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _references(references: Sequence[str] | str) -> list[str]:
    """Reference answers that say something: a bare string is one reference; None and blank
    strings are dropped (an empty cell in a CSV is not an answer)."""
    if isinstance(references, str):
        references = [references]
    return [r for r in references if r is not None and r.strip()]


def _exact_match_one(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _f1_one(prediction: str, reference: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    num_same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: Sequence[str]) -> float | None:
    """SQuAD v1.1 exact match, the max over the reference answers; None without references.

    >>> exact_match("the Broncos", ["Panthers", "Broncos"])
    1.0
    """
    refs = _references(references)
    if not refs:
        return None
    return max(_exact_match_one(prediction or "", r) for r in refs)


def token_f1(prediction: str, references: Sequence[str]) -> float | None:
    """SQuAD v1.1 token F1 (bag of normalised tokens), the max over references; None without references.

    >>> token_f1("Broncos of Denver", ["Denver Broncos"])
    0.8
    """
    refs = _references(references)
    if not refs:
        return None
    return max(_f1_one(prediction or "", r) for r in refs)


# ---------------------------------------------------------------- ragas non-LLM metrics


def _score_now(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a ragas `ascore` coroutine from sync code, also inside a running event loop (Jupyter).

    ragas' non-LLM `ascore` never suspends, so one `send` finishes it: no event loop, ~0.1 ms.
    ragas' own sync `score()` calls `asyncio.run` and raises inside Jupyter's loop. Should a
    future ragas really await something, a fresh coroutine runs to completion on its own loop.
    """
    coro = make()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    return run_coroutine(make(), thread_name="workbench-metrics")


@cache
def _ragas_rouge_l() -> Any:
    from ragas.metrics.collections import RougeScore  # imported on first use: ragas takes ~2 s to import

    return RougeScore(rouge_type="rougeL", mode="fmeasure")


@cache
def _ragas_string_similarity() -> Any:
    from ragas.metrics.collections import DistanceMeasure, NonLLMStringSimilarity

    return NonLLMStringSimilarity(distance_measure=DistanceMeasure.LEVENSHTEIN)


def _ragas_max(metric: Any, prediction: str, references: Sequence[str]) -> float | None:
    refs = _references(references)
    if not refs:
        return None
    prediction = prediction or ""
    return max(
        float(_score_now(lambda r=r: metric.ascore(reference=r, response=prediction)).value) for r in refs
    )


def rouge_l(prediction: str, references: Sequence[str]) -> float | None:
    """ragas ROUGE-L F-measure (rouge_score, Porter stemmer), the max over references; None without references.

    >>> round(rouge_l("Paris is the capital of France.", ["The capital of France is Paris."]), 4)
    0.6667
    """
    return _ragas_max(_ragas_rouge_l(), prediction, references)


def string_similarity(prediction: str, references: Sequence[str]) -> float | None:
    """ragas non-LLM string similarity: 1 - normalised Levenshtein distance (case-sensitive, raw
    strings), the max over references; None without references.

    >>> string_similarity("kitten", ["sitting"])  # 3 edits over 7 characters
    0.5714285714285714
    """
    return _ragas_max(_ragas_string_similarity(), prediction, references)


# ---------------------------------------------------------------- the answer-metric registry


@dataclass(frozen=True)
class AnswerMetric:
    """An answer metric, registered by the name the YAML and the results use."""

    name: str
    requires: frozenset[str]
    fn: Callable[[str, Sequence[str]], float | None]
    description: str

    def __post_init__(self) -> None:
        unknown = self.requires - INPUTS
        if unknown:
            raise ValueError(f"metric {self.name!r} requires unknown input(s) {sorted(unknown)}; known: {sorted(INPUTS)}")


_REF = frozenset({"reference_answers"})
ANSWER_METRICS: dict[str, AnswerMetric] = {
    m.name: m
    for m in (
        AnswerMetric("exact_match", _REF, exact_match, "SQuAD v1.1 exact match after normalisation, max over references"),
        AnswerMetric("f1", _REF, token_f1, "SQuAD v1.1 token F1 after normalisation, max over references"),
        AnswerMetric("rouge_l", _REF, rouge_l, "ragas ROUGE-L F-measure, max over references"),
        AnswerMetric(
            "string_similarity", _REF, string_similarity, "ragas 1 - normalised Levenshtein distance, max over references"
        ),
    )
}


def score_answer(prediction: str, references: Sequence[str]) -> dict[str, float | None]:
    """Every registered answer metric for one answer; all None when there are no references.

    >>> score_answer("Denver Broncos", ["Denver Broncos"])["f1"]
    1.0
    """
    return {name: metric.fn(prediction, references) for name, metric in ANSWER_METRICS.items()}


def missing_inputs(available: set[str], include_retrieval: bool = True) -> dict[str, str]:
    """Metrics that cannot run with the eval set's `available` inputs → the reason, for the report.

    Covers the answer metrics and, with `include_retrieval`, the retrieval metrics.

    >>> missing_inputs({"relevant_ids"})["exact_match"]
    'needs reference_answers (the eval set has none)'
    """
    unknown = set(available) - INPUTS
    if unknown:
        raise ValueError(f"unknown input name(s) {sorted(unknown)}; known inputs: {sorted(INPUTS)}")
    needs: dict[str, frozenset[str]] = {name: m.requires for name, m in ANSWER_METRICS.items()}
    if include_retrieval:
        needs.update({name: RETRIEVAL_REQUIRES for name in RETRIEVAL_METRICS})
    out: dict[str, str] = {}
    for name, requires in needs.items():
        lacking = sorted(requires - set(available))
        if lacking:
            out[name] = f"needs {' and '.join(lacking)} (the eval set has none)"
    return out


# ---------------------------------------------------------------- aggregates

N_BOOTSTRAP = 2000
_BOOTSTRAP_CHUNK = 250  # resamples drawn at a time: memory stays ~ chunk × n


def _real(values: Sequence[float | None]) -> np.ndarray:
    """The values that were measured: None and NaN left out."""
    arr = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return arr[~np.isnan(arr)]


def summarize(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean, n and a bootstrap 95% percentile CI of the mean over the measured values.

    None (and NaN) values are left out and n counts the rest. 2000 resamples from
    `numpy.random.default_rng(0)`, so the same values always give the same interval.
    With n = 0 every statistic is None.

    >>> summarize([1.0, None, 0.0, 1.0])["n"]
    3
    """
    x = _real(values)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "n": 0, "ci_low": None, "ci_high": None}
    rng = np.random.default_rng(0)
    means = np.empty(N_BOOTSTRAP)
    for start in range(0, N_BOOTSTRAP, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, N_BOOTSTRAP)
        means[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(x.mean()), "n": n, "ci_low": float(low), "ci_high": float(high)}


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """numpy's percentile (linear interpolation) of the measured values; None if there are none.

    >>> percentile([1.0, 2.0, 3.0, None], 50)
    2.0
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    x = _real(values)
    if x.size == 0:
        return None
    return float(np.percentile(x, q))
