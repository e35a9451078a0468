"""The budget guard: a small object the executor consults before each model call (a search can use it too).

`admit` answers a ticket or None. None means the call would pass a cap of the spec's `budget`
(`spec_budget.BudgetConfig`): the guard then stops the sweep (it sets the sweep's cancel event, so calls
waiting for a slot are dropped and the sweep finishes logging what it has). A ticket reserves the call's
worst case, its prompt tokens (`TokenCounter.upper`) plus `max_tokens` at the model's price, until `settle`
replaces it with what the endpoint's usage says it cost; so with N calls in flight the projection holds all
N worst cases and the cap is never passed by more than an endpoint's under-reported usage.

max_calls and max_usd count the whole sweep (the cells an earlier, stopped run of it answered included), so
running it again with a larger budget goes on where it stopped; max_wall_s counts this run's seconds.

The LLM judge's calls count like generation calls: the judge asks its `meter` (`BudgetGuard.meter`) before
each request, so a cap stops the sweep mid-judging too; what judging a cell cost is kept on its row
(`judge_calls`, `judge_cost_usd`), so a resumed sweep counts it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from workbench.errors import ConfigError
from workbench.rag.chat import Generation, cost_usd
from workbench.runner.forecast import model_key, price_per_token
from workbench.spec import JudgeConfig, ModelConfig, SweepSpec, VariantConfig, parse_model
from workbench.spec_budget import BudgetConfig


@dataclass(frozen=True)
class Ticket:
    model: ModelConfig
    usd: float  # the call's worst case, reserved until it is settled
    started: float


@dataclass
class BudgetGuard:
    budget: BudgetConfig
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # model key -> USD per (input, output) token
    started: float = field(default_factory=time.perf_counter)  # this run's start (max_wall_s)
    on_stop: Callable[[], None] | None = None
    calls: int = 0  # calls admitted, earlier runs of the sweep included
    usd: float = 0.0  # spent by settled calls, earlier runs included
    reserved: float = 0.0  # worst cases of the calls in flight
    latencies: list[float] = field(default_factory=list)
    stopped: str | None = None  # why the guard stopped the sweep

    @classmethod
    def for_sweep(cls, spec: SweepSpec, variants: Iterable[VariantConfig], started: float) -> BudgetGuard | None:
        """The guard of a capped sweep, None when the spec has no budget. With max_usd every model needs a price:
        checked here, before any work."""
        if not spec.budget.capped:
            return None
        prices: dict[str, tuple[float, float]] = {}
        for v in variants:
            if v.model is None or spec.budget.max_usd is None:
                continue
            price = price_per_token(v.model)
            if price is None:
                raise ConfigError(
                    f"budget.max_usd: no price is known for model {v.model.model!r} (genai-prices does not list it at "
                    f"{v.model.base_url or 'its default endpoint'}): set price_input_per_mtok and price_output_per_mtok "
                    "in its model config, or drop max_usd")
            prices[model_key(v.model)] = price
        if spec.judge is not None and spec.budget.max_usd is not None:
            judge = judge_model(spec.judge)
            price = price_per_token(judge)
            if price is None:
                raise ConfigError(
                    f"budget.max_usd: no price is known for the judge model {spec.judge.model!r} (genai-prices does not "
                    f"list it at {spec.judge.base_url or 'its default endpoint'}), so its calls cannot be capped in USD: "
                    "cap them with max_calls instead, or use a judge model genai-prices lists")
            prices[model_key(judge)] = price
        return cls(spec.budget, prices, started)

    def meter(self, judge: JudgeConfig) -> JudgeMeter:
        """What the judge consults before each of its calls: this guard, pricing the judge's model."""
        return JudgeMeter(self, judge_model(judge))

    def resume_from(self, done: Iterable[dict[str, Any]]) -> None:
        """Count what the earlier runs of this sweep spent: its answered cells that were model calls."""
        for row in done:
            if row.get("cached") is False or (row.get("error") and row.get("messages")):
                self.calls += 1
                cost = row.get("cost_usd")
                self.usd += float(cost) if isinstance(cost, (int, float)) else 0.0
            judged, judge_usd = row.get("judge_calls"), row.get("judge_cost_usd")  # scoring.judge.JUDGE_CALLS, JUDGE_USD
            self.calls += int(judged) if isinstance(judged, (int, float)) else 0
            self.usd += float(judge_usd) if isinstance(judge_usd, (int, float)) else 0.0

    def admit(self, model: ModelConfig, messages: list[dict]) -> Ticket | None:
        """A ticket for one call, or None (and the sweep stopped) when it would pass a cap."""
        if self.stopped is not None:
            return None
        b = self.budget
        worst = self._worst_usd(model, messages)
        elapsed = time.perf_counter() - self.started
        mean_latency = statistics.fmean(self.latencies) if self.latencies else 0.0
        if b.max_calls is not None and self.calls + 1 > b.max_calls:
            return self._stop(f"max_calls {b.max_calls} reached ({self.calls} calls made)")
        if b.max_usd is not None and self.usd + self.reserved + worst > b.max_usd:
            return self._stop(f"max_usd {b.max_usd:g}: ${self.usd:.6f} spent, ${self.reserved:.6f} in flight, and the "
                              f"next call may cost up to ${worst:.6f}")
        if b.max_wall_s is not None and elapsed + mean_latency > b.max_wall_s:
            return self._stop(f"max_wall_s {b.max_wall_s:g}: {elapsed:.1f} s elapsed, a call takes ~{mean_latency:.2f} s")
        self.calls += 1
        self.reserved += worst
        return Ticket(model, worst, time.perf_counter())

    def settle(self, ticket: Ticket, gen: Generation | Any | None) -> float:
        """The call ended: its worst case is replaced by its cost from the endpoint's usage (a failed call costs
        nothing; usage it did not report costs the worst case). Returns the USD counted. `gen`: anything with
        prompt_tokens and completion_tokens (a Generation, the judge's Reply)."""
        self.reserved = max(0.0, self.reserved - ticket.usd)
        if gen is None:
            return 0.0
        self.latencies.append(time.perf_counter() - ticket.started)
        if self.budget.max_usd is None:
            return 0.0
        cost = cost_usd(ticket.model, gen.prompt_tokens, gen.completion_tokens)
        counted = ticket.usd if cost is None else cost
        self.usd += counted
        return counted

    def _worst_usd(self, model: ModelConfig, messages: list[dict]) -> float:
        price = self.prices.get(model_key(model))
        if price is None or price == (0.0, 0.0):
            return 0.0
        from workbench.runner.tokens import counter_for

        return counter_for(model).upper(messages) * price[0] + model.max_tokens * price[1]

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        if self.on_stop is not None:
            self.on_stop()
        return None

    def spent(self) -> dict[str, float]:
        return {"budget.calls": float(self.calls), "budget.usd": self.usd}


@dataclass(frozen=True)
class JudgeMeter:
    """The guard as the judge sees it (scoring cannot import the runner): admit(messages), settle(ticket, reply)."""

    guard: BudgetGuard
    model: ModelConfig  # the judge as a model config, for its price and tokenizer

    def admit(self, messages: list[dict]) -> Ticket | None:
        return self.guard.admit(self.model, messages)

    def settle(self, ticket: Ticket, reply: Any) -> float:
        return self.guard.settle(ticket, reply)


def judge_model(judge: JudgeConfig) -> ModelConfig:
    """The judge's endpoint and decoding as a ModelConfig: how the guard prices and counts a judge call."""
    return ModelConfig(provider=judge.provider, model=judge.model, base_url=judge.base_url,
                       api_key_env=judge.api_key_env, temperature=judge.temperature, max_tokens=judge.max_tokens)


def with_budget(spec: SweepSpec, max_usd: float | None = None, max_calls: int | None = None,
                max_wall_s: float | None = None, source: str = "budget") -> SweepSpec:
    """The spec with the caps given (CLI flags, the notebook) over its own `budget`; one error names a bad value."""
    given = {k: v for k, v in {"max_usd": max_usd, "max_calls": max_calls, "max_wall_s": max_wall_s}.items()
             if v is not None}
    if not given:
        return spec
    budget = parse_model(BudgetConfig, {**spec.budget.model_dump(), **given}, source)
    return spec.model_copy(update={"budget": budget})
