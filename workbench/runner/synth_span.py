"""Span-first synthetic questions: we pick the supporting sentence, the model only answers and asks.

The default of `workbench synth` (`synth.span: chunk`). Measured with SmolLM2-135M on SQuAD
Super_Bowl_50 (README): asked to copy a sentence of the chunk itself, the model often copied the
worked example or wrote an answer found nowhere, so most candidates failed the grounded filter. Here a
seeded sentence of the chunk (6-60 words) is the span; the model sees only that sentence (a shorter
prompt, so a faster call) and writes a short answer copied from it and a question. The answer is kept
when the sentence holds it; else it is taken from the sentence (`answer_from_span`: the longest run of
the answer's words there); else, or when the question shares no word with the sentence (the model
asked about its worked example), the candidate is not grounded. `synth.span: model` keeps the older
prompt, where the model copies the span from the whole chunk.
"""

from __future__ import annotations

import json
import random
import re

from pydantic import BaseModel, Field

from workbench.data.synth_filters import STOPWORDS, answer_from_span
from workbench.rag.chunking import Chunk
from workbench.scoring.metrics import normalize_answer

# Whole sentences (not clauses, unlike synth_filters' grounding split on ";"): the question is asked of one.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SpanQA(BaseModel):
    """The reply: the answer first (copied from the sentence), then the question it answers."""

    answer: str = Field(min_length=1, max_length=80, description="a short phrase copied from the sentence")
    question: str = Field(min_length=8, max_length=200, description="a question whose answer is the answer")


_SYSTEM = ("You write quiz questions. Reply in JSON: answer is a short phrase copied from the sentence "
           "(a name, number, date or place), question is a question that this answer answers.")
_EXAMPLE = [{"role": "user", "content": "Sentence: The Eiffel Tower was finished in 1889 for the World's Fair in Paris."},
            {"role": "assistant", "content": json.dumps({"answer": "1889", "question": "When was the Eiffel Tower finished?"})}]
_ASK = {
    "factoid": "",
    "why_how": "\nAsk a question starting with Why or How.",
    "multi_chunk": "\nAsk one question that needs both sentences.",
}


def pick_sentence(chunk: Chunk, rng: random.Random) -> str:
    """A seeded sentence of the chunk with 6-60 words (the whole chunk, cut at 300 characters, if none)."""
    sentences = [s.strip() for s in _SENTENCE_END.split(chunk.text) if 6 <= len(s.split()) <= 60]
    return rng.choice(sentences) if sentences else chunk.text[:300]


def _sentences(spans: list[str]) -> str:
    """The sentence, or the sentences numbered, as both prompts show them."""
    if len(spans) == 1:
        return f"Sentence: {spans[0]}"
    return " ".join(f"Sentence {i + 1}: {s}" for i, s in enumerate(spans))


def span_messages(style: str, spans: list[str]) -> list[dict]:
    return [{"role": "system", "content": _SYSTEM}, *_EXAMPLE,
            {"role": "user", "content": _sentences(spans) + _ASK[style]}]


def ground_in_spans(answer: str, spans: list[str], question: str) -> tuple[str, str | None]:
    """(answer, where it came from): "model" when a span holds it, "span" when taken from one, else None
    — also None when the question names nothing of the spans (a copy of the worked example, say)."""
    words = lambda text: {w for w in normalize_answer(text).split() if len(w) > 2 and w not in STOPWORDS}  # noqa: E731
    if not words(question) & set().union(*(words(s) for s in spans)):
        return answer, None
    a = normalize_answer(answer)
    if a and any(f" {a} " in f" {normalize_answer(s)} " for s in spans):
        return answer, "model"
    for span in spans:
        taken = answer_from_span(answer, span)
        if taken:
            return taken, "span"
    return answer, None


# ---------------------------------------------------------------- answer-aware: we also pick the answer

_NUMBER = re.compile(r"\$?\d[\w,.:]*(?:[–-]\w+)*(?:\s(?:million|billion|yards|points|seconds|years))?")
_NAME = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:of\s+)?[A-Z][\w'’.-]*)*")
_LEADING = {"The", "A", "An", "In", "On", "At", "It", "This", "That", "He", "She", "They", "As", "For", "With", "But",
            "After", "Before", "During", "When", "While", "His", "Her", "Their", "Its", "However", "Although", "Despite"}


class AskQ(BaseModel):
    """The reply when the answer is given: only the question."""

    question: str = Field(min_length=8, max_length=200, description="a question whose answer is the given answer")


_ASK_SYSTEM = ("You write quiz questions. Reply in JSON: question is a question about the sentence whose answer "
               "is the given answer. Do not put the answer in the question.")
_ASK_EXAMPLE = [{"role": "user", "content": "Sentence: The Eiffel Tower was finished in 1889 for the World's Fair in "
                                            "Paris.\nAnswer: 1889"},
                {"role": "assistant", "content": json.dumps({"question": "When was the Eiffel Tower finished?"})}]


def pick_answer(sentence: str, rng: random.Random) -> str | None:
    """A seeded name, number or date of the sentence (a capitalised run without a leading function
    word, or a number with its unit); None when it has none."""
    names = []
    for m in _NAME.finditer(sentence):
        words = m.group(0).split()
        while words and words[0] in _LEADING:
            words = words[1:]
        if words:
            names.append(" ".join(words))
    options = [*dict.fromkeys(names + [m.group(0).rstrip(".,") for m in _NUMBER.finditer(sentence)])]
    return rng.choice(options) if options else None


def ask_messages(style: str, spans: list[str], answer: str) -> list[dict]:
    """The sentence(s) and the answer; the model writes only the question."""
    return [{"role": "system", "content": _ASK_SYSTEM}, *_ASK_EXAMPLE,
            {"role": "user", "content": f"{_sentences(spans)}\nAnswer: {answer}{_ASK.get(style, '')}"}]
