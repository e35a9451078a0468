"""Planted models for routing tests and benchmarks: per-model accuracy, latency and log-probs, known in advance.

    plan = RoutingPlan(answers={"Who won?": "Denver Broncos", ...},
                       models={"small": ModelProfile(accuracy=0.6, latency=0.01),
                               "large": ModelProfile(accuracy=0.9, latency=0.05)})
    with LatencyEndpoint(routing=plan) as endpoint: ...   # model "small" and "large" answer as planted

A question's difficulty is a number in [0, 1) from a sha256 of its text; a model answers it right when
the difficulty is under its accuracy (so what the small model gets right, the large one does too, as with
real models). A right answer is the reference; a wrong one is another question's reference, or "I don't
know." for a share of them (`dont_know`). Log-probs (only when the request asks, in OpenAI's
`choices[0].logprobs.content` format) have a per-answer mean drawn from N(right_logprob) or
N(wrong_logprob): lower when wrong, with overlap, like a real model's. A second sample at temperature > 0
(seeded) repeats a right answer and picks another wrong one, so two samples agree mostly when right.

Everything is a pure function of (question, model, temperature, seed, plan seed). Questions the plan
does not know, and models it has no profile for, get the plain fake answer (`fake_content.make_answer`).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.testing.fake_content import WORD, content_text

QUESTION = re.compile(r"Question:\s*(.+?)\s*(?:\n|$)")
DONT_KNOW = "I don't know."


@dataclass(frozen=True)
class ModelProfile:
    accuracy: float = 0.6  # share of questions (by difficulty) answered right
    latency: float = 0.01  # seconds per call
    right_logprob: tuple[float, float] = (-0.35, 0.3)  # (mean, sd) of a right answer's mean token log-prob
    wrong_logprob: tuple[float, float] = (-1.5, 0.5)
    dont_know: float = 0.0  # share of wrong answers that are "I don't know."


@dataclass(frozen=True)
class PlantedReply:
    text: str
    logprobs: list[float]
    latency: float
    right: bool


@dataclass
class RoutingPlan:
    answers: dict[str, str]  # question -> its reference answer
    models: dict[str, ModelProfile] = field(default_factory=dict)
    seed: int = 0

    # ------------------------------------------------------------ what a model answers

    def difficulty(self, question: str) -> float:
        return _unit(f"difficulty|{self.seed}|{question}")

    def right(self, model: str, question: str) -> bool:
        return self.difficulty(question) < self.models[model].accuracy

    def reply(self, model: str, messages: list[dict], temperature: float = 0.0, seed: Any = None) -> PlantedReply | None:
        profile = self.models.get(model)
        question = question_of(messages)
        if profile is None or question not in self.answers:
            return None
        sample = f"{temperature}|{seed}" if temperature > 0 else "greedy"
        right = self.right(model, question)
        rng = random.Random(f"{self.seed}|{model}|{question}|{sample}")
        if right:
            text = self.answers[question]
        else:
            pick = random.Random(f"{self.seed}|{model}|{question}|{sample}|wrong")
            if pick.random() < profile.dont_know:
                text = DONT_KNOW
            else:
                others = sorted({a for q, a in self.answers.items() if a != self.answers[question]}) or ["something else"]
                text = others[pick.randrange(len(others))]
        mean, sd = profile.right_logprob if right else profile.wrong_logprob
        centre = min(-0.01, rng.gauss(mean, sd))
        n = max(1, len(WORD.findall(text)))
        values = [min(0.0, centre + rng.gauss(0, 0.1)) for _ in range(n)]
        shift = centre - sum(values) / n  # the tokens' mean is exactly the drawn centre (clamped at 0)
        values = [min(0.0, v + shift) for v in values]
        return PlantedReply(text, values, profile.latency, right)

    # ------------------------------------------------------------ to and from the server process

    def to_json(self) -> str:
        return json.dumps({"answers": self.answers, "seed": self.seed,
                           "models": {name: asdict(p) for name, p in self.models.items()}})

    @classmethod
    def from_json(cls, text: str) -> RoutingPlan:
        data = json.loads(text)
        models = {name: ModelProfile(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})
                  for name, p in data["models"].items()}
        return cls(answers=data["answers"], models=models, seed=data.get("seed", 0))

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, path: str | Path) -> RoutingPlan:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def question_of(messages: list[dict]) -> str:
    """The question in the last user message: after "Question:" (the default prompt), else all of it."""
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
    text = content_text(last.get("content")) if isinstance(last, dict) else ""
    match = QUESTION.search(text)
    return (match.group(1) if match else text).strip()


def logprobs_block(text: str, values: list[float]) -> dict:
    """OpenAI's `choices[0].logprobs` for an answer: one entry per word-token."""
    tokens = WORD.findall(text) or [text]
    return {"content": [{"token": t, "logprob": v, "bytes": None, "top_logprobs": [{"token": t, "logprob": v, "bytes": None}]}
                        for t, v in zip(tokens, values)]}


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


__all__ = ["DONT_KNOW", "ModelProfile", "PlantedReply", "RoutingPlan", "logprobs_block", "question_of"]
