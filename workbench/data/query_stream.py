"""A query stream with repeats and paraphrases, replayed through a response cache (spec_routing.CacheConfig).

Production traffic repeats itself: the same question again, or the same question in other words. The
stream is the eval set in its order, plus for each question `repeats` exact repeats and `paraphrases`
rewordings (fixed templates, so it is offline and reproducible), each placed at a seeded position after
its original. A repeat or paraphrase keeps the original's reference answers and relevance, so whatever a
cache serves for it is scored like any answer, and a cached answer from a *different* question (a wrong
hit) scores against its references. A user's own log of questions is simply the eval set (`data.eval`)
with `paraphrases: 0, repeats: 0`.

>>> [q.id for q in stream((EvalItem("q1", "Who won?", ("A",)),), paraphrases=1, repeats=1)]
['q1', 'q1~p1', 'q1~r1']
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from workbench.data.evalset import EvalItem

TEMPLATES = (
    "Could you tell me {q}?",
    "I'd like to know: {Q}",
    "Quick question - {Q}",
    "{Q} Please answer briefly.",
    "Do you know {q}?",
)


def paraphrase(question: str, k: int = 0) -> str:
    """The k-th rewording of a question (same meaning, other surface)."""
    q = question.strip()
    bare = q.rstrip("?").strip()
    lower = bare[:1].lower() + bare[1:]
    return TEMPLATES[k % len(TEMPLATES)].format(q=lower, Q=q)


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def stream(items: Sequence[EvalItem], *, paraphrases: int = 1, repeats: int = 1, seed: int = 0) -> list[EvalItem]:
    """The eval items in order, with repeats (`<id>~r<n>`) and paraphrases (`<id>~p<n>`) after them."""
    n = len(items)
    keyed: list[tuple[float, int, EvalItem]] = []
    for i, item in enumerate(items):
        keyed.append((float(i), 0, item))
        derived = [(f"{item.id}~r{j + 1}", item.question) for j in range(repeats)]
        derived += [(f"{item.id}~p{j + 1}", paraphrase(item.question, j)) for j in range(paraphrases)]
        for m, (qid, text) in enumerate(derived, start=1):
            # somewhere after the original, before the end of the stream
            keyed.append((i + 0.5 + _unit(f"{seed}|{qid}") * (n - i - 0.5), m, dataclasses.replace(item, id=qid, question=text)))
    return [item for _, _, item in sorted(keyed, key=lambda k: (k[0], k[1]))]


__all__ = ["TEMPLATES", "paraphrase", "stream"]
