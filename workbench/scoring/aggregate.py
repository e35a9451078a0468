"""Aggregation is pure: `aggregate(rows)` turns a variant's per-question rows into the flat metric dict
that the DataFrame, the notebook and MLflow all show, so they can never disagree."""

from __future__ import annotations

import re
from typing import Any, Sequence

from workbench.scoring.metrics import percentile, summarize

# Per-question scores averaged per variant (with bootstrap CI and n). Retrieval ones need relevant ids,
# answer ones need reference answers; a score that could not be computed is None and is not averaged.
QUALITY_METRICS = (
    "hit_at_k",
    "recall_at_k",
    "mrr",
    "ndcg_at_k",
    "exact_match",
    "f1",
    "rouge_l",
    "string_similarity",
)
STAGES = ("retrieve", "generate", "total")
JUDGED = ("faithfulness", "answer_relevancy", "context_precision", "context_recall", "factual_correctness")
_CUTOFF = re.compile(r"^(hit|recall|mrr|ndcg)_at_\d+$")


def quality_metrics(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Fixed metrics, then retrieval metrics at extra cut-offs (`ndcg_at_10`), then LLM-judged ones present."""
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    cutoffs = sorted((k for k in present if _CUTOFF.match(k)), key=lambda k: (k.split("_at_")[0], int(k.split("_at_")[1])))
    return [*QUALITY_METRICS, *cutoffs, *(j for j in JUDGED if j in present)]


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flat metrics for one variant: `f1`, `f1_ci_low`, `f1_ci_high`, `f1_n`, latency p50/p95, tokens, cost."""
    ok = [r for r in rows if not r.get("error")]
    out: dict[str, float] = {"questions": float(len(rows)), "failed_cells": float(len(rows) - len(ok))}
    for name in quality_metrics(rows):
        s = summarize([r.get(name) for r in ok])
        if s["n"] == 0:
            continue  # not computable for this eval set: leave it out rather than report 0
        out[name] = s["mean"]
        out[f"{name}_ci_low"] = s["ci_low"]
        out[f"{name}_ci_high"] = s["ci_high"]
        out[f"{name}_n"] = float(s["n"])
    for name in JUDGED:
        errors = sum(1 for r in ok if r.get(f"{name}_error"))
        if errors:
            out[f"{name}_failed"] = float(errors)  # judgements that did not parse: excluded from the mean
    for stage in STAGES:
        values = [r[f"latency_{stage}_s"] for r in ok if r.get(f"latency_{stage}_s") is not None]
        if values:
            out[f"latency_{stage}_p50_s"] = percentile(values, 50)
            out[f"latency_{stage}_p95_s"] = percentile(values, 95)
            out[f"latency_{stage}_mean_s"] = sum(values) / len(values)
    for name in ("tokens_prompt", "tokens_completion"):
        values = [r.get(name) for r in ok]
        if ok and all(v is not None for v in values):
            out[name] = float(sum(values))
            out[f"{name}_mean"] = float(sum(values)) / len(values)
    costs = [r.get("cost_usd") for r in ok]
    if ok and all(c is not None for c in costs):  # an unknown price is not a free model
        out["cost_usd"] = float(sum(costs))
        out["cost_usd_per_1k"] = 1000.0 * float(sum(costs)) / len(costs)
    return out
