"""The sweep's cells of routed variants (spec_routing): a router or cascade answers through the sweep's
executor and generation cache (`TimedGenerations`), a response cache (when configured) serves repeats in
eval-set order, and the cell records which model answered, whether it escalated and every call it made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from workbench.data.query_stream import stream
from workbench.errors import ConfigError
from workbench.rag.assemble import chat_model
from workbench.rag.chat import ChatModel, Generation
from workbench.rag.response_cache import ResponseCache, wrong_hit
from workbench.rag.routing import JudgeFn, Routed, RoutedChat
from workbench.runner.generations import Measured, TimedGenerations
from workbench.scoring.cell import Cell
from workbench.spec import ExecutionConfig, VariantConfig
from workbench.spec_repeats import for_repeat
from workbench.spec_routing import RoutedModel


def items_for(variant: VariantConfig, items: tuple) -> tuple:
    """The questions a variant answers: a cached one replays the eval set with repeats and paraphrases."""
    cache = variant.model.cache if isinstance(variant.model, RoutedModel) else None
    if cache is None:
        return items
    return tuple(stream(items, paraphrases=cache.paraphrases, repeats=cache.repeats))


def judge_fn(judge: Any) -> JudgeFn | None:
    """The sweep's judge as a cascade signal (its faithfulness score), or None without a judge."""
    if judge is None:
        return None
    if "faithfulness" not in judge.cfg.metrics:
        raise ConfigError("cascade.escalate_when.signal judge_faithfulness reads the judge's faithfulness: add "
                          "faithfulness to judge.metrics")

    async def faithfulness(question: str, answer: str, contexts: Sequence[str]) -> float | None:
        return (await judge.ascore(question, answer, contexts, []))["faithfulness"].value

    return faithfulness


def routed_fields(routed: Routed) -> dict[str, Any]:
    """The Cell fields of a routed answer: the served text, the sums over its calls, the decision."""
    return {"answer": routed.generation.text, "cached": routed.cached, "latency_generate_s": routed.latency_s,
            "tokens_prompt": routed.tokens("prompt"), "tokens_completion": routed.tokens("completion"),
            "cost_usd": routed.cost_usd, "routed_to": routed.answered_by, "escalated": routed.escalated,
            "route_signal": routed.signal, "route_calls": [c.to_dict() for c in routed.calls]}


class RoutedCells:
    """Routed chats and response caches of one sweep, per (variant, repeat): answer r > 0 asks every named
    model with the repeat's seed (`spec_repeats.for_repeat`), and each repeat replays the query stream
    through a response cache of its own (repeat r is the whole experiment run again, not a cache hit)."""

    def __init__(self, base_urls: dict[str, str | None], execution: ExecutionConfig, generations: TimedGenerations,
                 sweep_id: str, judge: Any = None):
        self.base_urls = base_urls
        self.execution = execution
        self.generations = generations
        self.sweep_id = sweep_id
        self.judge = judge
        self.chats: dict[tuple[str, int], RoutedChat] = {}
        self.caches: dict[tuple[str, int], ResponseCache] = {}

    def chat_for(self, variant: VariantConfig, repeat: int = 0) -> RoutedChat:
        if (variant.hash, repeat) not in self.chats:
            def make(cfg, logprobs: bool = False) -> ChatModel:
                return chat_model(cfg, self.base_urls.get(cfg.provider), self.execution, logprobs=logprobs)

            cfg: RoutedModel = for_repeat(variant.model, repeat)  # type: ignore[assignment]
            needs_judge = cfg.cascade is not None and cfg.cascade.escalate_when.signal == "judge_faithfulness"
            self.chats[(variant.hash, repeat)] = RoutedChat.open(cfg, make, judge_fn(self.judge) if needs_judge else None)
        return self.chats[(variant.hash, repeat)]

    def cache_for(self, variant: VariantConfig, pipe: Any, repeat: int = 0) -> ResponseCache | None:
        cfg: RoutedModel = variant.model  # type: ignore[assignment]
        if cfg.cache is None:
            return None
        if (variant.hash, repeat) not in self.caches:
            self.caches[(variant.hash, repeat)] = ResponseCache(cfg.cache, pipe.index.embedder.embed)
        return self.caches[(variant.hash, repeat)]

    def remember(self, pipe: Any, item: Any, row: dict) -> None:
        """Put an earlier run's answer (a resumed sweep) in its repeat's cache, as the miss did then."""
        cache = self.cache_for(pipe.variant, pipe, row.get("repeat") or 0)
        if cache is not None and not row.get("error") and row.get("answer") is not None and not row.get("cache_hit"):
            cache.put(item.question, item.id, {"answer": row["answer"], "cost_usd": row.get("cost_usd"),
                                               "latency_s": row.get("latency_generate_s")}, item.reference_answers)

    async def answer(self, pipe: Any, item: Any, cell: Cell, hits: list, retrieve_s: float, rank: int,
                     retime: bool, repeat: int = 0) -> Cell:
        """The cell (answer `repeat` of the question) answered by the routed variant (a ModelError
        propagates: the caller records it, or retries it once the local server was restarted)."""
        variant = pipe.variant
        cache = self.cache_for(variant, pipe, repeat)
        if cache is not None:
            start = time.perf_counter()
            hit = await asyncio.to_thread(cache.get, item.question)  # a semantic lookup embeds: off the loop
            lookup_s = time.perf_counter() - start
            if hit is not None:
                stored = hit.value
                return cell.replace(
                    answer=stored["answer"], cached=False, latency_generate_s=lookup_s,
                    latency_total_s=retrieve_s + lookup_s, tokens_prompt=0, tokens_completion=0, cost_usd=0.0,
                    routed_to="cache", escalated=None, route_signal=hit.similarity,
                    route_calls=[{"cache": hit.kind, "question_id": hit.question_id}], cache_hit=hit.kind,
                    cache_wrong_hit=wrong_hit(hit, item.reference_answers),
                    cache_saved_usd=stored["cost_usd"], cache_saved_s=stored["latency_s"])
        measured: list[tuple[Generation, bool, Measured]] = []

        async def call(chat: ChatModel, messages: list[dict]) -> tuple[Generation, bool]:
            result = await self.generations.generate(chat, messages, priority=rank, retime=retime)
            measured.append(result)
            return result[0], result[1]

        routed = await self.chat_for(variant, repeat).answer(item.question, hits, cell.messages, call)
        # the served answer's provenance: a fresh call of this sweep if there was one, else the cached one's
        fresh = [m for _, cached, m in measured if not cached]
        provenance = (fresh or [m for _, _, m in measured])[-1]
        out = cell.replace(**routed_fields(routed), **provenance.fields(),
                           latency_total_s=retrieve_s + routed.latency_s)
        if cache is not None:
            await asyncio.to_thread(cache.put, item.question, item.id, {
                "answer": routed.generation.text, "cost_usd": routed.cost_usd, "latency_s": routed.latency_s},
                item.reference_answers)
            out = out.replace(cache_hit=None, cache_wrong_hit=None)
        return out

    async def aclose(self) -> None:
        for chat in self.chats.values():
            await chat.aclose()


__all__ = ["RoutedCells", "items_for", "judge_fn", "routed_fields"]
