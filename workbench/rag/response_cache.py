"""A response cache in front of a variant's model: exact (the same question, normalised) or semantic (the
most similar earlier question by embedding cosine, at least `threshold`).

A hit serves the earlier question's answer at no model cost; it is a *wrong hit* when the earlier
question's reference answers share none with this one's (`wrong_hit`), and since the served answer is
scored against this question's references, a wrong hit counts against quality, honestly.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.spec_routing import CacheConfig

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces: `Who won Super Bowl 50?` == `who won super bowl 50`."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return _SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class Hit:
    kind: str  # "exact" | "semantic"
    similarity: float
    question_id: str  # the earlier question whose answer is served
    value: Any  # what `put` stored
    references: tuple[str, ...]


def wrong_hit(hit: Hit, references: Sequence[str]) -> bool | None:
    """True when the cached answer was for a question whose references share none with `references`
    (None: one side has no references, so it cannot be told)."""
    ours = {normalise(r) for r in references}
    theirs = {normalise(r) for r in hit.references}
    if not ours or not theirs:
        return None
    return not (ours & theirs)


class ResponseCache:
    """In memory, one per variant (a sweep's stream or a production pipeline's lifetime).

    `embed(texts) -> unit rows` is needed for the semantic kind (the variant's own embedder)."""

    def __init__(self, cfg: CacheConfig, embed: Callable[[Sequence[str]], np.ndarray] | None = None):
        if cfg.kind == "semantic" and embed is None:
            raise ValueError("a semantic response cache needs an embedder")
        self.cfg = cfg
        self.embed = embed
        self._exact: dict[str, Hit] = {}
        self._rows: list[np.ndarray] = []
        self._entries: list[Hit] = []
        self.lookups = 0
        self.hits = 0

    def get(self, question: str) -> Hit | None:
        self.lookups += 1
        found = self._exact.get(normalise(question))
        if found is None and self.cfg.kind == "semantic" and self._rows:
            vector = self._vector(question)
            sims = np.vstack(self._rows) @ vector
            best = int(np.argmax(sims))
            if float(sims[best]) >= self.cfg.threshold:
                e = self._entries[best]
                found = Hit("semantic", float(sims[best]), e.question_id, e.value, e.references)
        if found is not None:
            self.hits += 1
        return found

    def put(self, question: str, question_id: str, value: Any, references: Sequence[str] = ()) -> None:
        entry = Hit("exact", 1.0, question_id, value, tuple(references))
        key = normalise(question)
        if key in self._exact:
            return  # the first answer stays (what a production cache would keep serving)
        self._exact[key] = entry
        if self.cfg.kind == "semantic":
            self._rows.append(self._vector(question))
            self._entries.append(entry)

    def _vector(self, question: str) -> np.ndarray:
        row = np.asarray(self.embed([question])[0], dtype=np.float32)  # type: ignore[misc]
        norm = float(np.linalg.norm(row)) or 1.0
        return row / norm


__all__ = ["Hit", "ResponseCache", "normalise", "wrong_hit"]
