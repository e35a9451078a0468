"""Metric functions: retrieval (trec_eval definitions), answers without an LLM, and aggregates.

Pure core: no MLflow, no files, no network, no registry. Which metrics exist, what each needs and
which way is better is declared once in `workbench.scoring.catalogue`; `workbench.scoring.score`
applies the catalogue to a cell. Per-question values are `float | None`: None means "not defined
for this question" and aggregates leave it out (`summarize` reports n).

Retrieval works on documents, not chunks: `doc_ranking` turns the retrieved chunks' document ids
into a document ranking (a document counts at the rank of its first chunk); the retrieval
functions score that ranking against the positive relevance grades (`relevant_gains`) with
trec_eval's definitions (checked against pytrec_eval in the tests).

>>> ranking = doc_ranking(["d3", "d3", "d1", "d7"])
>>> ranking
['d3', 'd1', 'd7']
>>> reciprocal_rank(ranking, relevant_gains({"d1": 1}))
0.5
>>> exact_match("The Denver Broncos!", ["Denver Broncos"])
1.0
"""

from __future__ import annotations

import math
import re
import string
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

import numpy as np

from workbench.scoring import text_similarity

# ---------------------------------------------------------------- retrieval (document level)


def doc_ranking(chunk_doc_ids: Sequence[str]) -> list[str]:
    """Document ranking from the retrieved chunks' document ids, best first.

    A document counts once, at the rank where its first chunk appears.

    >>> doc_ranking(["a", "b", "a", "c", "b"])
    ['a', 'b', 'c']
    """
    return list(dict.fromkeys(chunk_doc_ids))


def check_cutoff(k: int, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")


def relevant_gains(relevance: Mapping[str, int]) -> dict[str, float]:
    """Judged documents with a positive grade. trec_eval counts grade >= 1 as relevant and gives
    negative grades no gain."""
    return {doc: float(grade) for doc, grade in relevance.items() if grade > 0}


def _dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def hit_at(ranking: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """1 if any relevant document is in the top k, else 0 (trec_eval `P_k > 0`).

    >>> hit_at(["x", "d1"], {"d1": 1.0}, 1)
    0.0
    """
    return 1.0 if any(gains.get(doc, 0.0) > 0 for doc in ranking[:k]) else 0.0


def recall_at(ranking: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """Relevant documents in the top k / all relevant documents (trec_eval `recall_k`)."""
    return sum(1 for doc in ranking[:k] if gains.get(doc, 0.0) > 0) / len(gains)


def ndcg_at(ranking: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """Graded nDCG over the top k: gain = grade, discount log2(rank + 1), the ideal built from every
    relevant judged document (trec_eval `ndcg_cut`)."""
    ideal = _dcg(sorted(gains.values(), reverse=True)[:k])
    return _dcg([gains.get(doc, 0.0) for doc in ranking[:k]]) / ideal


def reciprocal_rank(ranking: Sequence[str], gains: Mapping[str, float], cutoff: int | None = None) -> float:
    """1 / rank of the first relevant document, 0 if none is within `cutoff` (None: anywhere; trec_eval
    `recip_rank`).

    >>> reciprocal_rank(["x", "d1"], {"d1": 1.0}), reciprocal_rank(["x", "d1"], {"d1": 1.0}, cutoff=1)
    (0.5, 0.0)
    """
    for rank, doc in enumerate(ranking if cutoff is None else ranking[:cutoff], start=1):
        if doc in gains:
            return 1.0 / rank
    return 0.0


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


def preload() -> None:
    """Import the scorers' libraries now (a sweep calls this on a worker thread before its first score, so
    the import never runs on the event loop while the model calls wait): also numpy.random, which numpy loads
    on first use, and numpy.ma, which np.percentile loads, for the aggregates' bootstrap intervals (~30 ms as the
    first variant finishes)."""
    import numpy.ma  # noqa: F401 - np.percentile (np.unique) loads it on first use
    import numpy.random  # noqa: F401

    text_similarity.load()


_preloading: Future | None = None
_preloading_lock = threading.Lock()


def preload_in_background() -> Future:
    """`preload` on a daemon thread, started once per process (the sweep at its start, its execution, a Ray
    worker all ask): the future to wait on before the first score, failing there as the first score would.
    A daemon thread, not a pool's: an idle pool thread would keep a finished command from its quick exit."""
    global _preloading
    with _preloading_lock:
        if _preloading is None:
            from workbench.sync import in_daemon_thread

            _preloading = in_daemon_thread(preload, "workbench-preload-scorers")  # the scorer awaiting it raises
        return _preloading


def _max_over(fn: Callable[[str, str], float], prediction: str, references: Sequence[str]) -> float | None:
    refs = _references(references)
    if not refs:
        return None
    return max(fn(r, prediction or "") for r in refs)


def rouge_l(prediction: str, references: Sequence[str]) -> float | None:
    """ragas' ROUGE-L F-measure (rouge_score, Porter stemmer), the max over references; None without references.

    >>> round(rouge_l("Paris is the capital of France.", ["The capital of France is Paris."]), 4)
    0.6667
    """
    return _max_over(text_similarity.rouge_l_f, prediction, references)


def string_similarity(prediction: str, references: Sequence[str]) -> float | None:
    """ragas' non-LLM string similarity: 1 - normalised Levenshtein distance (case-sensitive, raw
    strings), the max over references; None without references.

    >>> string_similarity("kitten", ["sitting"])  # 3 edits over 7 characters
    0.5714285714285714
    """
    return _max_over(text_similarity.levenshtein_similarity, prediction, references)


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
