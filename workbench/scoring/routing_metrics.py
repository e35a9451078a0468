"""A variant's routing and caching aggregates, from its cells' routing fields (`Cell.routed_to`, …).

- `routed_share.<model>`: the share of answered questions each named model answered (`cache`: cache hits).
- `escalation_rate` (with a bootstrap CI, `_ci_low`/`_ci_high`, and `_n`): a cascade's escalated share.
- `cost_usd_per_1k_ci_low` / `_ci_high`: the CI of `cost_usd_per_1k` (1,000 × the per-question mean cost),
  for every variant whose every cost is known.
- `cache_hit_rate`, `cache_wrong_hit_rate` (wrong hits / hits: how often a served cached answer was for a
  question with other references), `cache_saved_usd_per_1k` and `cache_saved_s_mean` (cost and generation
  latency the hits did not spend, per 1,000 questions and per question).

Plain variants get only the cost CI. Their directions, ranges and labels are declared in the metric
catalogue (`catalogue.AGGREGATES`), which every consumer reads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from workbench.scoring.metrics import summarize


def _with_ci(out: dict[str, float], name: str, values: Sequence[float | None], scale: float = 1.0) -> None:
    s = summarize([None if v is None else float(v) * scale for v in values])
    if s["n"]:
        out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = s["mean"], s["ci_low"], s["ci_high"]
        out[f"{name}_n"] = float(s["n"])


def routing_aggregates(ok: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The aggregates above for a variant's cells that did not fail."""
    out: dict[str, float] = {}
    costs = [r.get("cost_usd") for r in ok]
    if ok and all(c is not None for c in costs):
        s = summarize([1000.0 * float(c) for c in costs])
        out["cost_usd_per_1k_ci_low"], out["cost_usd_per_1k_ci_high"] = s["ci_low"], s["ci_high"]
        out["cost_usd_per_1k_n"] = float(s["n"])  # a CI always comes with its n (the export reads them together)
    routed = [r for r in ok if r.get("routed_to")]
    if routed:
        for name, n in sorted(Counter(r["routed_to"] for r in routed).items()):
            out[f"routed_share.{name}"] = n / len(routed)
    decided = [r["escalated"] for r in routed if r.get("escalated") is not None]
    if decided:
        _with_ci(out, "escalation_rate", [1.0 if e else 0.0 for e in decided])
    looked_up = [r for r in routed if "cache_hit" in r]
    if looked_up:
        hits = [r for r in looked_up if r.get("cache_hit")]
        out["cache_hit_rate"] = len(hits) / len(looked_up)
        judged = [r["cache_wrong_hit"] for r in hits if r.get("cache_wrong_hit") is not None]
        out["cache_wrong_hit_rate"] = sum(1 for w in judged if w) / len(judged) if judged else 0.0
        saved = [r.get("cache_saved_usd") for r in hits]
        if all(c is not None for c in saved):
            out["cache_saved_usd_per_1k"] = 1000.0 * sum(saved) / len(looked_up)
        out["cache_saved_s_mean"] = sum(r.get("cache_saved_s") or 0.0 for r in hits) / len(looked_up)
    return out


__all__ = ["routing_aggregates"]
