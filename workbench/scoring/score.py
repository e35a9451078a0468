"""Scoring one cell with the catalogue's retrieval and answer metrics (the judge adds the judged ones).

Pure core. A metric whose inputs the cell lacks is left out (its key absent, never 0); a retrieval
metric on a question with no relevant document is None (not defined, left out of the means).

>>> retrieval_metrics(["x", "d1", "y"], {"d1": 1, "d2": 1}, k=3)
{'hit_at_k': 1.0, 'recall_at_k': 0.5, 'mrr': 0.5, 'ndcg_at_k': 0.38685280723454163}
>>> score_answer("Denver Broncos", ["Denver Broncos"])["f1"]
1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workbench.scoring import catalogue
from workbench.scoring.cell import ABSENT, Cell
from workbench.scoring.metrics import check_cutoff, doc_ranking, relevant_gains


def retrieval_scores(ranked_doc_ids: Sequence[str], relevance: Mapping[str, int], k: int,
                     cutoffs: Sequence[int] = ()) -> dict[str, float | None]:
    """Every retrieval metric at k, then each cut-off family at every extra cut-off (`ndcg_at_10`).

    `relevance` maps document ids to graded judgements (0 = judged not relevant, 1, 2, … relevant).
    When no document is relevant every value is None (pytrec_eval would report 0.0; such questions
    are left out of the means instead). A repeated id counts at its first rank.
    """
    check_cutoff(k)
    for c in cutoffs:
        check_cutoff(c, "each cutoff")
    ranking = doc_ranking(ranked_doc_ids)
    gains = relevant_gains(relevance)
    metrics = catalogue.all_metrics("retrieval")
    out = {m.name: (m.fn(ranking, gains, k) if gains else None) for m in metrics}
    for c in sorted(set(cutoffs)):
        for m in metrics:
            if m.cutoff_family:
                out[m.at(c)] = m.score_at(ranking, gains, c) if gains else None
    return out


def retrieval_metrics(ranked_doc_ids: Sequence[str], relevance: Mapping[str, int], k: int) -> dict[str, float | None]:
    """The retrieval metrics at k of one ranking (trec_eval definitions, see `retrieval_scores`)."""
    return retrieval_scores(ranked_doc_ids, relevance, k)


def retrieval_metrics_at(ranked_doc_ids: Sequence[str], relevance: Mapping[str, int],
                         cutoffs: Sequence[int]) -> dict[str, float | None]:
    """Only the cut-off columns (`hit_at_N`, `recall_at_N`, `mrr_at_N`, `ndcg_at_N`) for every cutoff N.

    >>> retrieval_metrics_at(["x", "d1"], {"d1": 1}, [1, 10])["mrr_at_10"]
    0.5
    """
    if not cutoffs:
        raise ValueError("cutoffs must name at least one cutoff, e.g. [1, 5, 10]")
    plain = set(catalogue.names("retrieval"))
    return {k: v for k, v in retrieval_scores(ranked_doc_ids, relevance, 1, cutoffs).items() if k not in plain}


def score_answer(prediction: str, references: Sequence[str]) -> dict[str, float | None]:
    """Every answer metric of the catalogue for one answer (the reference-based ones are None without
    references)."""
    return {m.name: m.fn(prediction, references) for m in catalogue.all_metrics("answer")}


def answer_scores(prediction: str, references: Sequence[str]) -> dict[str, float | None]:
    """The answer metrics whose inputs are there: without reference answers only those needing none."""
    available = {"reference_answers"} if references else set()
    return {m.name: m.fn(prediction, references) for m in catalogue.all_metrics("answer") if m.needs <= available}


def score_cell(cell: Cell, relevance: Mapping[str, int], k: int, cutoffs: Sequence[int] = (),
               answers: bool = True) -> Cell:
    """The cell with its document ranking, retrieval scores (when there are relevance judgements) and
    answer scores (when `answers` and it has an answer; a failed cell gets none)."""
    ranked = doc_ranking(cell.retrieved_chunk_doc_ids)
    scores: dict[str, float | None] = {}
    if relevance:
        scores.update(retrieval_scores(ranked, relevance, k, cutoffs))
    if answers and cell.ok and cell.answer is not ABSENT and cell.answer is not None:
        refs = list(cell.reference_answers or [])
        scores.update(answer_scores(cell.answer, refs))
    return cell.replace(retrieved_doc_ids=ranked).with_scores(scores)


def missing_inputs(available: set[str], include_retrieval: bool = True) -> dict[str, str]:
    """Metrics that cannot run with the eval set's `available` inputs → the reason, for the report.

    Covers the answer metrics and, with `include_retrieval`, the retrieval metrics.

    >>> missing_inputs({"relevant_ids"})["exact_match"]
    'needs reference_answers (the eval set has none)'
    """
    unknown = set(available) - catalogue.INPUTS
    if unknown:
        raise ValueError(f"unknown input name(s) {sorted(unknown)}; known inputs: {sorted(catalogue.INPUTS)}")
    kinds = ("answer", "retrieval") if include_retrieval else ("answer",)
    out: dict[str, str] = {}
    for metric in (m for kind in kinds for m in catalogue.all_metrics(kind)):
        lacking = sorted(metric.needs - set(available))
        if lacking:
            out[metric.name] = f"needs {' and '.join(lacking)} (the eval set has none)"
    return out


__all__ = ["answer_scores", "missing_inputs", "retrieval_metrics", "retrieval_metrics_at", "retrieval_scores",
           "score_answer", "score_cell"]
