"""The routing signals: pure functions of the question, the retrieved hits or the first answer.

Before answering (a router compares one with its threshold: under it goes to `below`, else `above`):
- `question_tokens`: words and punctuation marks of the question (`\\w+|[^\\w\\s]`). Model-independent on
  purpose, so one threshold means the same for every pair of models; long questions tend to be harder.
- `retrieval_top_score`: the first hit's score (dense: cosine similarity in [-1, 1]; bm25: BM25 score;
  hybrid: RRF score, so a threshold fits one retrieval kind). Low: the corpus may not hold the answer.
- `retrieval_margin`: first hit's score minus the second's (0 with fewer than two hits). Small: retrieval
  could not tell the best passage from the next.
- `top_hit_agreement`: the share of the hits from the top hit's document, in (0, 1] (0 without hits).
  High: the evidence is in one place.

After the first model answered (a cascade escalates when the signal is under `below`):
- `answer_logprob_mean`: the mean token log-probability of the answer (<= 0; the endpoint's `logprobs`,
  requested for the first model). None when the endpoint sent none: the cascade then escalates, since it
  cannot vouch for the answer (counted, never hidden).
- `dont_know`: the answer is empty or says it does not know (`DONT_KNOW`): escalate (no threshold).
- `sample_agreement`: token F1 in [0, 1] between the answer and a second, seeded sample at a temperature
  above 0 (SQuAD-style normalisation). A model that is unsure says different things twice.
- `judge_faithfulness`: a judge's faithfulness score in [0, 1] of the answer to the retrieved contexts
  (only when the caller provides a judge).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from workbench.rag.retrieval import Hit

_TOKEN = re.compile(r"\w+|[^\w\s]")
DONT_KNOW = re.compile(
    r"\b(i\s+(do\s*n[o']?t|don't|cannot|can't|am\s+not\s+sure)\s+(know|say|tell|find|answer)|"
    r"(not|no)\s+(mentioned|stated|given|provided|enough\s+information)|unknown|no\s+answer|cannot\s+be\s+determined)\b",
    re.IGNORECASE,
)


def question_tokens(question: str) -> float:
    return float(len(_TOKEN.findall(question)))


def retrieval_top_score(hits: Sequence[Hit]) -> float:
    return float(hits[0].score) if hits else float("-inf")


def retrieval_margin(hits: Sequence[Hit]) -> float:
    return float(hits[0].score - hits[1].score) if len(hits) >= 2 else 0.0


def top_hit_agreement(hits: Sequence[Hit]) -> float:
    if not hits:
        return 0.0
    top = hits[0].chunk.doc_id
    return sum(1 for h in hits if h.chunk.doc_id == top) / len(hits)


BEFORE = {"question_tokens": lambda q, hits: question_tokens(q), "retrieval_top_score": lambda q, hits: retrieval_top_score(hits),
          "retrieval_margin": lambda q, hits: retrieval_margin(hits), "top_hit_agreement": lambda q, hits: top_hit_agreement(hits)}


def before(signal: str, question: str, hits: Sequence[Hit]) -> float:
    """A router's signal for this question and its hits."""
    return BEFORE[signal](question, hits)


def answer_logprob_mean(logprobs: Sequence[float] | None) -> float | None:
    if not logprobs:
        return None
    return sum(logprobs) / len(logprobs)


def dont_know(answer: str | None) -> bool:
    return not (answer or "").strip() or DONT_KNOW.search(answer or "") is not None


def _normal_tokens(text: str) -> list[str]:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in ("a", "an", "the")]


def sample_agreement(a: str | None, b: str | None) -> float:
    """Token F1 of two answers (1.0 when both are empty: they agree on saying nothing)."""
    x, y = _normal_tokens(a or ""), _normal_tokens(b or "")
    if not x or not y:
        return 1.0 if not x and not y else 0.0
    common = sum((Counter(x) & Counter(y)).values())
    if common == 0:
        return 0.0
    p, r = common / len(x), common / len(y)
    return 2 * p * r / (p + r)


__all__ = ["BEFORE", "DONT_KNOW", "answer_logprob_mean", "before", "dont_know", "question_tokens",
           "retrieval_margin", "retrieval_top_score", "sample_agreement", "top_hit_agreement"]
