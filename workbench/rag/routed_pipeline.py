"""Production's routed pipeline: retrieve → prompt → the routed model (router, cascade, response cache).

`load_pipeline` builds it for an exported routed variant; it answers through the same `RoutedChat` the
sweep ran (one call after another, no executor), so it reproduces the sweep's answers and routing
decisions, and its `Answer` says which model answered, whether it escalated and what every call cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from workbench.rag.chat import ChatModel, Generation
from workbench.rag.pipeline import Answer, RAGPipeline, contexts_from_hits
from workbench.rag.response_cache import ResponseCache
from workbench.rag.retrieval import ChunkIndex, Hit
from workbench.rag.routing import CallFn, RoutedChat
from workbench.spec import VariantConfig
from workbench.sync import run_coroutine


async def blocking_call(chat: ChatModel, messages: list[dict]) -> tuple[Generation, bool]:
    """One call on the sync client: production answers one question at a time, and an async client would
    be bound to the event loop of the first question."""
    return chat.generate(messages), False


class RoutedPipeline(RAGPipeline):
    def __init__(self, variant: VariantConfig, index: ChunkIndex, chat: RoutedChat):
        super().__init__(variant, index, None)
        self.chat = chat
        cache_cfg = chat.cfg.cache
        self.cache = ResponseCache(cache_cfg, index.embedder.embed) if cache_cfg is not None else None

    def answer_from_hits(self, question: str, hits: Sequence[Hit], retrieve_s: float) -> Answer:
        return run_coroutine(self.aanswer_from_hits(question, hits, retrieve_s, blocking_call))

    async def aanswer_from_hits(self, question: str, hits: Sequence[Hit], retrieve_s: float,
                                call: CallFn = blocking_call) -> Answer:
        """The answer with which model gave it; `call` makes one model call (`workbench serve`: through its
        executor, as the sweep did; default: the sync client, one question at a time)."""
        if self.cache is not None:
            start = time.perf_counter()
            hit = self.cache.get(question)
            if hit is not None:
                lookup_s = time.perf_counter() - start
                return Answer(question, hit.value["answer"], contexts_from_hits(hits), 0, 0, 0.0,
                              {"retrieve_s": retrieve_s, "generate_s": lookup_s, "total_s": retrieve_s + lookup_s},
                              answered_by="cache", routing={"cache_hit": hit.kind, "similarity": hit.similarity,
                                                            "escalated": None, "calls": []})
        routed = await self.chat.answer(question, hits, self.messages(question, hits), call)
        if self.cache is not None:
            self.cache.put(question, question, {"answer": routed.generation.text})
        return Answer(
            question=question, answer=routed.generation.text, contexts=contexts_from_hits(hits),
            prompt_tokens=routed.tokens("prompt"), completion_tokens=routed.tokens("completion"),
            cost_usd=routed.cost_usd,
            latency={"retrieve_s": retrieve_s, "generate_s": routed.latency_s, "total_s": retrieve_s + routed.latency_s},
            answered_by=routed.answered_by,
            routing={"escalated": routed.escalated, "signal": routed.signal, "cache_hit": None,
                     "calls": [c.to_dict() for c in routed.calls]},
        )

    def close(self) -> None:
        for chat in self.chat.clients:
            chat.close()


__all__ = ["RoutedPipeline", "blocking_call"]
