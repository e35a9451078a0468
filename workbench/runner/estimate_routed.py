"""A routed variant's part of `estimate(spec)`: which named models its cells call, and how often, as bounds.

- router: each question calls one model: low = every question on the cheaper model, high = every one on
  the dearer, expected = the share an earlier run of this variant sent to each (else half each).
- cascade: each question calls `first` (twice with `sample_agreement`: the seeded second sample), and
  `then` for the escalated share: low 0, high 1, expected the escalation rate an earlier run of this
  variant measured on this corpus (else 0.5). A judge signal's calls are the judge's (not in these figures).
- one named model (`use`) with a response cache: the query stream (eval set, repeats, paraphrases) calls
  the model on its misses: low = only the first of each question (exact) or the very first (semantic),
  high = every question of the stream, expected = 1 - an earlier run's hit rate (else midway).

The per-model arithmetic (tokens, prices, endpoints, waves) is `runner.forecast`'s: one `VariantLoad` per
named model with its calls per cell as (low, expected, high).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from workbench.runner.forecast import PromptSample, VariantLoad, price_per_token
from workbench.runner.records import SweepRecord
from workbench.spec import ModelConfig, VariantConfig
from workbench.spec_routing import RoutedModel

ASSUMED = 0.5  # the escalation share (or a router's split) when no earlier run of the variant measured one


@dataclass
class History:
    """What earlier runs of one routed variant on this corpus did, from their cells."""

    cells: int = 0
    routed_to: Counter = field(default_factory=Counter)  # named model (or "cache") -> cells it answered
    escalated: int = 0
    decided: int = 0  # cells with a cascade decision

    def share(self, name: str) -> float | None:
        answered = sum(n for model, n in self.routed_to.items() if model != "cache")
        return self.routed_to[name] / answered if answered else None

    def escalation(self) -> float | None:
        return self.escalated / self.decided if self.decided else None

    def hit_rate(self) -> float | None:
        return self.routed_to["cache"] / self.cells if self.cells else None


def routed_history(home: Path, corpus_digest: str, wanted: set[str]) -> dict[str, History]:
    """Variant hash -> what earlier sweeps of it on this corpus did (the latest write of each cell)."""
    root = home / "sweeps"
    out: dict[str, History] = {}
    if not wanted or not root.is_dir():
        return out
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        record = SweepRecord(directory)
        if (record.status().get("data") or {}).get("data.corpus.digest") != corpus_digest:
            continue
        for row in record.cells():
            if row.get("variant_hash") not in wanted or row.get("error") or not row.get("routed_to"):
                continue
            seen = out.setdefault(row["variant_hash"], History())
            seen.cells += 1
            seen.routed_to[row["routed_to"]] += 1
            if row.get("escalated") is not None:
                seen.decided += 1
                seen.escalated += bool(row["escalated"])
    return out


def _typical_cost(cfg: ModelConfig, prompt: PromptSample | None) -> float | None:
    """One call's USD at the sample's mean prompt and max_tokens: which of two models is the dearer."""
    price = price_per_token(cfg)
    if price is None:
        return None
    tokens = prompt.per_cell().expected if prompt is not None else 0.0
    return price[0] * tokens + price[1] * cfg.max_tokens


def routed_loads(variant: VariantConfig, new_cells: int, questions: int, stream: int,
                 prompt_for: Callable[[ModelConfig], PromptSample | None],
                 seen: History | None) -> tuple[list[VariantLoad], tuple[float, float, float], str]:
    """(loads, model calls as (low, expected, high), a note saying how) for a routed variant's `new_cells`;
    `stream`: the cells of one pass over its query stream (the eval set, or a cache's longer stream)."""
    cfg: RoutedModel = variant.model  # type: ignore[assignment]
    models = {name: cfg.models[name] for name in cfg.names}
    prompts = {name: prompt_for(m) for name, m in models.items()}

    def load(name: str, share: tuple[float, float, float], model: ModelConfig | None = None) -> VariantLoad:
        return VariantLoad(model or models[name], new_cells, prompts[name], share)

    def basis(measured: float | None, what: str) -> tuple[float, str]:
        if measured is None:
            return ASSUMED, f"{what} {ASSUMED:g} assumed (no earlier run of this variant)"
        return measured, f"{what} {measured:.3g} from an earlier run of this variant"

    label = f"variant {variant.short_hash} ({cfg.model})"
    if cfg.cascade is not None:
        first, then = cfg.cascade.first, cfg.cascade.then
        e, how = basis(seen.escalation() if seen else None, "escalation share")
        loads = [load(first, (1.0, 1.0, 1.0)), load(then, (0.0, e, 1.0))]
        if cfg.cascade.escalate_when.signal == "sample_agreement":  # the second sample: another call of `first`
            loads.append(load(first, (1.0, 1.0, 1.0), models[first].model_copy(
                update={"temperature": cfg.cascade.escalate_when.second_temperature})))
        note = f"{label}: each question calls {first}, and {then} when it escalates (share 0 to 1, expected {how})"
    elif cfg.router is not None and cfg.router.below != cfg.router.above:
        below, above = cfg.router.below, cfg.router.above
        split, how = basis(seen.share(above) if seen else None, f"share to {above}")
        costs = {name: _typical_cost(models[name], prompts[name]) for name in (below, above)}
        cheap_first = costs[above] is None or costs[below] is None or costs[below] <= costs[above]
        cheap, dear = (below, above) if cheap_first else (above, below)
        expected = {below: 1.0 - split, above: split}
        loads = [load(cheap, (1.0, expected[cheap], 0.0)), load(dear, (0.0, expected[dear], 1.0))]
        note = f"{label}: each question calls one model, low all on {cheap}, high all on {dear} (expected {how})"
    else:
        loads, note = [load(cfg.names[0], (1.0, 1.0, 1.0))], f"{label}: one model, every question"
    if cfg.cache is not None:  # the stream calls the model(s) only on a cache miss
        low = (questions if cfg.cache.kind == "exact" else 1) / stream
        hit = seen.hit_rate() if seen else None
        miss = 1.0 - hit if hit is not None else (low + 1.0) / 2
        how = f"hit rate {hit:.3g} from an earlier run" if hit is not None else "midway, no earlier run"
        loads = [VariantLoad(x.model, x.new_cells, x.prompt, (x.share[0] * low, x.share[1] * miss, x.share[2]))
                 for x in loads]
        note += (f"; its {cfg.cache.kind} cache's stream of {stream} questions calls only on a miss: at least "
                 f"{'each distinct question once' if cfg.cache.kind == 'exact' else 'the first'}, at most all "
                 f"(expected {how})")
    calls = tuple(sum(x.calls()[i] for x in loads) for i in range(3))
    return loads, calls, note  # type: ignore[return-value]


def prompt_counter(sampled: list[list[dict]] | None, questions: int, hows: set[str]) -> Callable[[Any], Any]:
    """`prompt_for(model)`: the sampled prompts counted with that model's tokenizer (None without a sample)."""
    from workbench.runner.tokens import counter_for

    def prompt_for(model: ModelConfig) -> PromptSample | None:
        if not sampled:
            return None
        counter = counter_for(model)
        hows.add(counter.how)
        return PromptSample(tuple(counter.count(m) for m in sampled), questions, counter.exact)

    return prompt_for


__all__ = ["ASSUMED", "History", "prompt_counter", "routed_history", "routed_loads"]
