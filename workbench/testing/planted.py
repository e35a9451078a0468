"""A planted quality model: the truth a search benchmark or test is scored against.

Each variant is a tuple of axis levels (e.g. chunking, retrieval, prompt, model). Its logit of answering
correctly is a base plus one additive effect per axis level plus a few two-axis interactions; each
question has a difficulty shared by every variant (real eval sets have easy and hard questions, which is
what makes paired tests work). P(correct | variant, question) = sigmoid(logit + difficulty).

The fake endpoint (`fake_server --planted`) answers with the question's planted answer with that
probability, reading the variant from what a request shows: the model name `planted-m<i>`, a prompt tag
`[planted-p<j>]` in the message and the number of contexts (documents start with `¶`), i.e. the axes
(retrieval k, prompt, model). Everything is a pure function of (seed, variant, question): the endpoint and
an in-process oracle agree answer for answer.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()
_PROMPT_TAG = re.compile(r"\[planted-p(\d+)\]")
_MODEL = re.compile(r"planted-m(\d+)")
WRONG = "I do not know"


def _unit(*parts: object) -> float:
    """A uniform number in (0, 1) from a hash of the parts: the same on every machine and process."""
    h = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return (int.from_bytes(h[:8], "big") + 0.5) / 2**64


def planted_answer(question: str) -> str:
    """The one right answer to a planted question (the eval set's reference answer)."""
    return "answer " + hashlib.sha256(question.encode()).hexdigest()[:8]


@dataclass
class PlantedQuality:
    """sizes: levels per axis; seed draws the effects and the question difficulties."""

    sizes: Sequence[int]
    seed: int = 0
    base: float = 0.3
    spread: float = 0.35  # sd of a main effect (logit)
    interactions: int = 3  # two-axis interaction tables
    difficulty_sd: float = 1.2
    lifted: Sequence[int] | None = None  # one variant given `lift` more (a planted, clear winner)
    lift: float = 0.0
    main: list[np.ndarray] = field(init=False)
    inter: list[tuple[int, int, np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.main = [rng.normal(0.0, self.spread, n) for n in self.sizes]
        pairs = list(itertools.combinations(range(len(self.sizes)), 2))
        chosen = rng.choice(len(pairs), size=min(self.interactions, len(pairs)), replace=False) if pairs else []
        self.inter = [(pairs[i][0], pairs[i][1], rng.normal(0.0, self.spread / 2, (self.sizes[pairs[i][0]], self.sizes[pairs[i][1]])))
                      for i in chosen]

    def variants(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(n) for n in self.sizes)))

    def logit(self, levels: Sequence[int]) -> float:
        value = self.base + sum(float(self.main[a][lv]) for a, lv in enumerate(levels))
        if self.lifted is not None and tuple(levels) == tuple(self.lifted):
            value += self.lift
        return value + sum(float(t[levels[a], levels[b]]) for a, b, t in self.inter)

    def difficulty(self, question_id: str) -> float:
        return self.difficulty_sd * _NORMAL.inv_cdf(_unit("difficulty", self.seed, question_id))

    def p(self, levels: Sequence[int], question_id: str) -> float:
        return 1.0 / (1.0 + math.exp(-(self.logit(levels) + self.difficulty(question_id))))

    def correct(self, levels: Sequence[int], question_id: str) -> bool:
        return _unit("answer", self.seed, tuple(levels), question_id) < self.p(levels, question_id)

    def true_quality(self, levels: Sequence[int], question_ids: Sequence[str]) -> float:
        """The expected share of correct answers over these questions (what a search should find)."""
        return float(np.mean([self.p(levels, q) for q in question_ids]))

    def outcomes(self, question_ids: Sequence[str]) -> np.ndarray:
        """Variants (in `variants()` order) × questions, 1.0 where the answer is right: the oracle."""
        return np.array([[1.0 if self.correct(v, q) else 0.0 for q in question_ids] for v in self.variants()])

    # ------------------------------------------------------------ the endpoint's side

    def model_names(self) -> list[str]:
        """What /v1/models lists: the planted models (the last axis)."""
        return [f"planted-m{m}" for m in range(self.sizes[-1])]

    def levels_of(self, messages: list[dict], model: str) -> tuple[int, ...] | None:
        """(k − 1, prompt, model) read from a request, for a planted space of axes (retrieval, prompt, model)."""
        text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        prompt, found = _PROMPT_TAG.search(text), _MODEL.fullmatch(model or "")
        if prompt is None or found is None:
            return None
        return (text.count("¶") - 1, int(prompt.group(1)), int(found.group(1)))

    def reply(self, messages: list[dict], model: str) -> str:
        """The planted answer with the variant's probability, else a wrong one; WRONG for an unplanted request."""
        levels = self.levels_of(messages, model)
        question = re.search(r"Question:\s*(.*?)\s*(?:\nAnswer:|$)", str(messages[-1].get("content", "")), re.S)
        if levels is None or question is None or not all(0 <= lv < n for lv, n in zip(levels, self.sizes)):
            return WRONG
        q = question.group(1)
        return planted_answer(q) if self.correct(levels, q) else WRONG


# ---------------------------------------------------------------- a sweep over a planted space


def write_planted_data(folder, n_questions: int, n_docs: int = 6) -> tuple[str, str]:
    """A corpus of `n_docs` documents (each starts with ¶, so a prompt shows how many were retrieved) and an
    eval set whose reference answers are the planted answers. Returns (corpus path, eval path)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    corpus, evalset = folder / "corpus.jsonl", folder / "eval.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"¶ Planted item notes, part {i}: planted item facts."}) + "\n"
                              for i in range(n_docs)), encoding="utf-8")
    lines = []
    for i in range(n_questions):
        q = f"What is planted item {i}?"
        lines.append(json.dumps({"id": f"q{i:04d}", "question": q, "reference_answers": [planted_answer(q)]}) + "\n")
    evalset.write_text("".join(lines), encoding="utf-8")
    return str(corpus), str(evalset)


def planted_space(sizes: Sequence[int], base_url: str) -> dict:
    """The spec's `space` for axes (retrieval k = 1..sizes[0], prompt tags, model names) on the endpoint."""
    k, prompts, models = sizes
    return {
        "chunking": [{"strategy": "none"}],
        "retrieval": [{"kind": "bm25", "k": i + 1} for i in range(k)],
        "prompt": [{"name": f"p{j}", "template": f"[planted-p{j}] Context:\n{{context}}\n\nQuestion: {{question}}\nAnswer:"}
                   for j in range(prompts)],
        "model": [{"provider": "openai", "model": f"planted-m{m}", "base_url": base_url, "max_tokens": 8}
                  for m in range(models)],
    }


def levels_of_variant(variant) -> tuple[int, ...]:
    """A planted space's VariantConfig as its axis levels (the endpoint's reading of its requests)."""
    return (variant.retrieval.k - 1, int(variant.prompt.name.removeprefix("p")),
            int(variant.model.model.removeprefix("planted-m")))
