"""One question through one variant: retrieve → prompt → generate.

The sweep and production (`load_pipeline`) answer through this same class, so an exported
configuration gives the answers the sweep measured.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

from workbench.spec import PromptConfig, VariantConfig
from workbench.rag.chat import ChatModel, Generation, cost_usd
from workbench.rag.retrieval import ChunkIndex, Hit


@dataclass(frozen=True)
class Context:
    chunk_id: str
    doc_id: str
    text: str
    score: float
    rank: int


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    contexts: tuple[Context, ...]
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency: dict[str, float] = field(default_factory=dict)  # retrieve_s, generate_s, total_s
    answered_by: str | None = None  # a routed variant: the named model that answered ("cache": a cache hit)
    routing: dict = field(default_factory=dict)  # a routed variant: escalated, signal, calls, cache_hit

    @property
    def doc_ids(self) -> list[str]:
        return [c.doc_id for c in self.contexts]

    def to_dict(self) -> dict:
        return asdict(self)


def render_messages(prompt: PromptConfig, question: str, contexts: Sequence[str]) -> list[dict[str, str]]:
    """One short user message: SmolLM2 answers best without a system prompt."""
    content = prompt.template.format(context=prompt.context_separator.join(contexts), question=question)
    return [{"role": "user", "content": content}]


def contexts_from_hits(hits: Sequence[Hit]) -> tuple[Context, ...]:
    return tuple(Context(h.chunk.id, h.chunk.doc_id, h.chunk.text, float(h.score), h.rank) for h in hits)


class RAGPipeline:
    """Answers questions with one variant over a built index and a chat model.

    >>> pipe = RAGPipeline(variant, index, ChatModel(variant.model))   # doctest: +SKIP
    >>> pipe.answer("Who won Super Bowl 50?").answer                    # doctest: +SKIP
    """

    def __init__(self, variant: VariantConfig, index: ChunkIndex, model: ChatModel | None):
        self.variant = variant
        self.index = index
        self.model = model

    def retrieve(self, question: str) -> tuple[list[Hit], float]:
        start = time.perf_counter()
        hits = self.index.search([question], self.variant.retrieval)[0]
        return hits, time.perf_counter() - start

    def messages(self, question: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
        """The prompt for this question and these retrieved chunks."""
        return render_messages(self.variant.prompt, question, [h.chunk.text for h in hits])

    def generate(self, question: str, hits: Sequence[Hit]) -> Generation:
        if self.model is None:
            raise RuntimeError("this pipeline has no model (retrieval only)")
        return self.model.generate(self.messages(question, hits))

    def answer(self, question: str) -> Answer:
        hits, retrieve_s = self.retrieve(question)
        return self.answer_from_hits(question, hits, retrieve_s)

    def answer_from_hits(self, question: str, hits: Sequence[Hit], retrieve_s: float) -> Answer:
        return self.answer_from_generation(question, hits, retrieve_s, self.generate(question, hits))

    def answer_from_generation(self, question: str, hits: Sequence[Hit], retrieve_s: float, gen: Generation) -> Answer:
        """The typed answer, however the generation was obtained (the sweep's bounded, cached executor
        or a direct call): one place computes its latency, tokens and cost."""
        return Answer(
            question=question,
            answer=gen.text,
            contexts=contexts_from_hits(hits),
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            cost_usd=cost_usd(self.variant.model, gen.prompt_tokens, gen.completion_tokens),
            latency={"retrieve_s": retrieve_s, "generate_s": gen.latency_s, "total_s": retrieve_s + gen.latency_s},
        )
