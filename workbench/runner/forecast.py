"""What a sweep will cost before it runs: tokens, USD and wall time, each as {low, expected, high}.

Pure arithmetic over what `runner.estimate` gathers: per variant its new (uncached) cells and the prompt
tokens of a sample of its real rendered prompts; per model what earlier sweeps observed (completion tokens,
call latency) and its price; per endpoint its concurrency and rate limits. Cached cells are free.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from workbench.spec import ExecutionConfig, ModelConfig


@dataclass(frozen=True)
class Range:
    low: float | None
    expected: float | None
    high: float | None

    @classmethod
    def unknown(cls) -> Range:
        return cls(None, None, None)

    def known(self) -> bool:
        return self.expected is not None

    def __add__(self, other: Range) -> Range:
        if not (self.known() and other.known()):
            return Range.unknown()
        return Range(self.low + other.low, self.expected + other.expected, self.high + other.high)

    def scaled(self, lo: float, mid: float, hi: float) -> Range:
        return Range(self.low * lo, self.expected * mid, self.high * hi) if self.known() else self

    def rounded(self, digits: int | None = None) -> dict[str, float | None]:
        def r(v):
            return None if v is None else (round(v) if digits is None else round(v, digits))
        return {"low": r(self.low), "expected": r(self.expected), "high": r(self.high)}


ZERO = Range(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class PromptSample:
    """Prompt token counts of a seeded sample of one variant's real prompts, out of `population` questions."""

    counts: tuple[int, ...]
    population: int
    exact: bool  # counted with the model's own tokenizer

    def per_cell(self) -> Range:
        """Mean tokens per prompt with ±2 standard errors (finite population corrected); an approximate
        tokenizer widens it (characters per token vary with the text: 0.75x to 1.35x)."""
        n = len(self.counts)
        mean = statistics.fmean(self.counts)
        sd = statistics.stdev(self.counts) if n > 1 else mean * 0.25
        fpc = math.sqrt(max(0.0, (self.population - n) / max(1, self.population - 1)))
        half = 2 * sd / math.sqrt(n) * fpc
        out = Range(max(0.0, mean - half), mean, mean + half)
        return out if self.exact else out.scaled(0.75, 1.0, 1.35)


@dataclass(frozen=True)
class Observed:
    """What earlier sweeps measured for one model config (generations not from the cache)."""

    completion_tokens: tuple[int, ...] = ()
    latency_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class VariantLoad:
    """One variant's share of the sweep (a routed variant: one load per named model it calls)."""

    model: ModelConfig
    new_cells: int
    prompt: PromptSample | None  # None: no prompt could be rendered (its note says why)
    # calls per new cell at (low, expected, high): 1 for a plain model; a cascade's second model (0, e, 1)
    share: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def calls(self) -> tuple[float, float, float]:
        return tuple(self.new_cells * s for s in self.share)  # type: ignore[return-value]


@dataclass
class Estimate:
    variants: int
    questions: int
    model_calls: int  # new generation calls (cached cells are free)
    cached_calls: int
    judge_calls: int
    prompt_tokens: Range
    completion_tokens: Range
    usd: Range
    wall_s: Range
    notes: list[str] = field(default_factory=list)
    basis: dict[str, str] = field(default_factory=dict)  # figure -> how it was found

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": self.variants, "questions": self.questions, "model_calls": self.model_calls,
            "cached_calls": self.cached_calls, "judge_calls": self.judge_calls,
            "prompt_tokens": self.prompt_tokens.rounded(), "completion_tokens": self.completion_tokens.rounded(),
            "usd": self.usd.rounded(6), "wall_s": self.wall_s.rounded(1), "basis": dict(self.basis),
            "notes": list(self.notes),
        }

    def text(self) -> str:
        """The estimate as lines for a terminal."""
        def fmt(r: Range, unit: str = "", digits: int = 0) -> str:
            if not r.known():
                return "unknown"
            f = (lambda v: "?" if v is None else f"{v:,.{digits}f}")
            return f"{f(r.expected)}{unit} (range {f(r.low)} to {f(r.high)}{unit})"

        lines = [f"variants {self.variants} x questions {self.questions}: model calls {self.model_calls} new, "
                 f"{self.cached_calls} cached (free); judge calls {self.judge_calls}",
                 f"prompt tokens      {fmt(self.prompt_tokens)}",
                 f"completion tokens  {fmt(self.completion_tokens)}",
                 f"USD                {fmt(self.usd, digits=4)}",
                 f"wall               {fmt(self.wall_s, ' s', 1)}"]
        lines += [f"  {name}: {how}" for name, how in self.basis.items()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def metrics(self) -> dict[str, float]:
        """The figures as flat `estimate.*` metrics (expected, low and high) for the parent MLflow run."""
        out = {"estimate.calls": float(self.model_calls), "estimate.judge_calls": float(self.judge_calls)}
        for name in ("prompt_tokens", "completion_tokens", "usd", "wall_s"):
            r: Range = getattr(self, name)
            if r.known():
                out[f"estimate.{name}"] = float(r.expected)
                out[f"estimate.{name}_low"] = float(r.low)
                out[f"estimate.{name}_high"] = float(r.high)
        return out


def completion_per_cell(model: ModelConfig, seen: Observed) -> tuple[Range, str]:
    """Observed completions when earlier sweeps answered with this model config, else max_tokens (a cap)."""
    cap = float(model.max_tokens)
    if len(seen.completion_tokens) >= 3:
        mean = statistics.fmean(seen.completion_tokens)
        return Range(min(seen.completion_tokens), mean, cap), f"observed ({len(seen.completion_tokens)} earlier answers)"
    return Range(1.0, cap, cap), "max_tokens (no earlier answers of this model config)"


def price_per_token(model: ModelConfig) -> tuple[float, float] | None:
    """(input, output) USD per token: configured, 0 for local, genai-prices; None when unknown."""
    from workbench.rag.chat import cost_usd

    per_input, per_output = cost_usd(model, 1_000_000, 0), cost_usd(model, 0, 1_000_000)
    if per_input is None or per_output is None:
        return None
    return per_input / 1e6, per_output / 1e6


def latency_range(values: Sequence[float]) -> Range:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return Range(q(0.1), statistics.median(ordered), q(0.9))


def endpoint_wall(calls: int, tokens: float, latency: Range, concurrency: int, execution: ExecutionConfig) -> Range:
    """One endpoint's share: waves of `concurrency` calls, or the rate limits, whichever is slower."""
    if calls == 0:
        return ZERO
    floor = 0.0
    if execution.requests_per_minute:
        floor = max(floor, calls * 60 / execution.requests_per_minute)
    if execution.tokens_per_minute:
        floor = max(floor, tokens * 60 / execution.tokens_per_minute)
    if not latency.known():
        return Range.unknown() if floor == 0 else Range(floor, None, None)
    waves = math.ceil(calls / concurrency)
    return Range(max(floor, waves * latency.low), max(floor, waves * latency.expected), max(floor, waves * latency.high))


def forecast_figures(loads: Sequence[VariantLoad], observed: dict[str, Observed], execution: ExecutionConfig,
                     latency: dict[str, Range], endpoint_of) -> tuple[Range, Range, Range, Range, dict[str, str], list[str]]:
    """(prompt tokens, completion tokens, USD, wall) over the variants' new cells, with the basis and notes.

    observed: by model key; latency: by endpoint (configured, probed or observed); endpoint_of(model) ->
    (endpoint key, concurrency)."""
    prompt, completion, usd = ZERO, ZERO, ZERO
    basis: dict[str, str] = {}
    notes: list[str] = []
    calls: dict[str, tuple[float, float, float]] = {}
    tokens: dict[str, float] = {}
    for load in loads:
        if load.new_cells == 0 or max(load.share) == 0:
            continue
        lo, n, hi = load.calls()
        p = load.prompt.per_cell().scaled(lo, n, hi) if load.prompt is not None else Range.unknown()
        c, how = completion_per_cell(load.model, observed.get(model_key(load.model), Observed()))
        c = c.scaled(lo, n, hi)
        basis.setdefault("completion_tokens", how)
        prompt, completion = prompt + p, completion + c
        price = price_per_token(load.model)
        if price is None:
            usd = Range.unknown()
            notes.append(f"no price for model {load.model.model!r}: set price_input_per_mtok and "
                         "price_output_per_mtok in its config")
        elif usd.known() and p.known():
            usd = usd + Range(p.low * price[0] + c.low * price[1], p.expected * price[0] + c.expected * price[1],
                              p.high * price[0] + c.high * price[1])
        else:
            usd = Range.unknown()
        key, _ = endpoint_of(load.model)
        calls[key] = tuple(a + b for a, b in zip(calls.get(key, (0.0, 0.0, 0.0)), (lo, n, hi)))  # type: ignore[assignment]
        tokens[key] = tokens.get(key, 0.0) + (p.expected or 0.0) + n * load.model.max_tokens
    shares = []
    for key, (lo, n, hi) in calls.items():
        args = (latency.get(key, Range.unknown()), concurrency_of(key, loads, endpoint_of), execution)
        share = endpoint_wall(math.ceil(n), tokens[key], *args)
        if lo != n or hi != n:  # a routed variant's calls are a range: the wall's bounds use its bounds
            share = Range(endpoint_wall(math.ceil(lo), tokens[key], *args).low, share.expected,
                          endpoint_wall(math.ceil(hi), tokens[key], *args).high)
        if not share.known():
            notes.append(f"no latency known for endpoint {key}: give one (--latency S) or probe it (--probe N)")
        shares.append(share)
    if not all(share.known() for share in shares):
        wall = Range.unknown()
    else:  # endpoints run side by side: the slowest sets the wall time
        wall = Range(*(max((getattr(s, f) for s in shares), default=0.0) for f in ("low", "expected", "high")))
    return prompt, completion, usd, wall, basis, notes


def concurrency_of(key: str, loads: Sequence[VariantLoad], endpoint_of) -> int:
    return next(endpoint_of(v.model)[1] for v in loads if endpoint_of(v.model)[0] == key)


def model_key(model: ModelConfig) -> str:
    """What completions and latency depend on: the model config (its hash)."""
    from workbench.spec import content_hash

    return content_hash(model.model_dump(mode="json"))


__all__ = ["Estimate", "Observed", "PromptSample", "Range", "VariantLoad", "asdict", "forecast_figures"]
