"""A routed model answers one question: a router picks a model before answering, a cascade lets the first
model answer and escalates to the second when a signal says the answer is weak (`workbench.rag.signals`).

The sweep and production (`load_pipeline`) run the same `RoutedChat.answer`; only how one model call is
made differs (`CallFn`: the sweep's bounded, cached executor, or a direct call), so an exported routed
variant reproduces the sweep's answers and routing decisions. Every call is recorded with its tokens, cost
and latency; a cascade that escalates pays for both calls and its latency is the sum of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

from workbench.errors import ConfigError
from workbench.rag import signals
from workbench.rag.chat import ChatModel, Generation, cost_usd
from workbench.rag.retrieval import Hit
from workbench.spec import ModelConfig
from workbench.spec_routing import RoutedModel

# (chat model, messages) -> (generation, came from the generation cache)
CallFn = Callable[[ChatModel, list[dict]], Awaitable[tuple[Generation, bool]]]
# (question, answer, contexts) -> faithfulness in [0, 1], or None when the judge could not say
JudgeFn = Callable[[str, str, Sequence[str]], Awaitable[float | None]]


@dataclass(frozen=True)
class Call:
    """One model call a routed answer made."""

    model: str  # the named model
    purpose: str  # "answer" | "second_sample"
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None  # None: unknown price (never "free")
    latency_s: float
    cached: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Routed:
    """The answer served, which named model gave it and what it cost in all."""

    generation: Generation  # the served answer's generation
    answered_by: str
    escalated: bool | None  # a cascade's decision; None for a router or a single model
    signal: float | None  # the value the decision compared (dont_know: 1.0 when it said so)
    calls: tuple[Call, ...]

    @property
    def cost_usd(self) -> float | None:
        costs = [c.cost_usd for c in self.calls]
        return None if any(c is None for c in costs) else float(sum(costs))  # type: ignore[arg-type]

    def tokens(self, which: str) -> int | None:
        values = [getattr(c, f"{which}_tokens") for c in self.calls]
        return None if any(v is None for v in values) else int(sum(values))  # type: ignore[arg-type]

    @property
    def latency_s(self) -> float:
        return sum(c.latency_s for c in self.calls)  # the calls run one after another

    @property
    def cached(self) -> bool:
        return all(c.cached for c in self.calls)


def decide_route(cfg: RoutedModel, question: str, hits: Sequence[Hit]) -> tuple[str, float | None]:
    """The named model a router (or `use`) picks for this question, and the signal it compared."""
    if cfg.router is not None:
        value = signals.before(cfg.router.signal, question, hits)
        return (cfg.router.below if value < cfg.router.threshold else cfg.router.above), value  # type: ignore[operator]
    if cfg.use is not None:
        return cfg.use, None
    raise ValueError("a cascade decides after its first answer (escalate)")


def escalate(signal: str, below: float | None, value: float | None) -> bool:
    """A cascade's decision: escalate when the signal is under `below`, or unknown (it cannot vouch for the
    answer); dont_know escalates when its value is 1 (the answer was empty or said it does not know)."""
    if signal == "dont_know":
        return bool(value)
    return value is None or value < below  # type: ignore[operator]


class RoutedChat:
    """The chat models of one routed variant and the per-question logic; create with `open`."""

    def __init__(self, cfg: RoutedModel, chats: dict[str, ChatModel], *, first_with_logprobs: ChatModel | None = None,
                 second_sample: ChatModel | None = None, judge: JudgeFn | None = None):
        self.cfg = cfg
        self.chats = chats
        self.first_with_logprobs = first_with_logprobs
        self.second_sample = second_sample
        self.judge = judge
        esc = cfg.cascade.escalate_when if cfg.cascade is not None else None
        if esc is not None and esc.signal == "judge_faithfulness" and judge is None:
            raise ConfigError("cascade.escalate_when.signal judge_faithfulness needs a judge: add a `judge` section "
                              "to the spec (or choose another signal)")
        if cfg.threshold is not None and isinstance(cfg.threshold, list):
            raise ConfigError("a routed variant has one threshold; expand the list with SpaceConfig.variants()")

    @classmethod
    def open(cls, cfg: RoutedModel, make: Callable[..., ChatModel], judge: JudgeFn | None = None) -> RoutedChat:
        """`make(model_config, logprobs=False)` builds one chat client (the caller's URLs, timeouts, retries)."""
        chats = {name: make(cfg.models[name]) for name in cfg.names}
        first_lp = second = None
        if cfg.cascade is not None:
            esc, first = cfg.cascade.escalate_when, cfg.models[cfg.cascade.first]
            if esc.signal == "answer_logprob_mean":  # the first model's answers, with their token log-probs
                first_lp = make(first, logprobs=True)
            if esc.signal == "sample_agreement":  # seeded, so the second sample is reproducible
                second = make(first.model_copy(update={"temperature": esc.second_temperature,
                                                       "seed": (first.seed or 0) + 1}))
        return cls(cfg, chats, first_with_logprobs=first_lp, second_sample=second, judge=judge)

    @property
    def clients(self) -> list[ChatModel]:
        return [*self.chats.values(), *(c for c in (self.first_with_logprobs, self.second_sample) if c is not None)]

    async def aclose(self) -> None:
        for chat in self.clients:
            await chat.aclose()

    async def _call(self, call: CallFn, name: str, chat: ChatModel, messages: list[dict], purpose: str,
                    cfg: ModelConfig) -> tuple[Generation, Call]:
        gen, cached = await call(chat, messages)
        return gen, Call(name, purpose, gen.prompt_tokens, gen.completion_tokens,
                         cost_usd(cfg, gen.prompt_tokens, gen.completion_tokens), gen.latency_s, cached)

    async def answer(self, question: str, hits: Sequence[Hit], messages: list[dict], call: CallFn) -> Routed:
        cfg = self.cfg
        if cfg.cascade is None:
            name, value = decide_route(cfg, question, hits)
            gen, record = await self._call(call, name, self.chats[name], messages, "answer", cfg.models[name])
            return Routed(gen, name, None, value, (record,))
        first, then, esc = cfg.cascade.first, cfg.cascade.then, cfg.cascade.escalate_when
        gen, record = await self._call(call, first, self.first_with_logprobs or self.chats[first], messages, "answer",
                                       cfg.models[first])
        records = [record]
        if esc.signal == "answer_logprob_mean":
            value = signals.answer_logprob_mean(gen.logprobs)
        elif esc.signal == "dont_know":
            value = 1.0 if signals.dont_know(gen.text) else 0.0
        elif esc.signal == "sample_agreement":
            other, record = await self._call(call, first, self.second_sample, messages, "second_sample", cfg.models[first])
            records.append(record)
            value = signals.sample_agreement(gen.text, other.text)
        else:
            value = await self.judge(question, gen.text, [h.chunk.text for h in hits])  # type: ignore[misc]
        if not escalate(esc.signal, esc.below, value):
            return Routed(gen, first, False, value, tuple(records))
        served, record = await self._call(call, then, self.chats[then], messages, "answer", cfg.models[then])
        return Routed(served, then, True, value, (*records, record))


async def direct_call(chat: ChatModel, messages: list[dict]) -> tuple[Generation, bool]:
    """A `CallFn` without executor or cache (production)."""
    return await chat.agenerate(messages), False


__all__ = ["Call", "CallFn", "JudgeFn", "Routed", "RoutedChat", "decide_route", "direct_call", "escalate"]
