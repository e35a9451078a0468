"""Sweep results as pandas: one row per variant (`to_frame`) or per (variant, question) (`questions`).

Aggregation is pure: `aggregate(rows)` turns a variant's per-question rows into the flat metric dict
that both the DataFrame and MLflow show, so the two can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from workbench.config import SweepSpec, VariantConfig
from workbench.metrics import percentile, summarize

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


@dataclass
class SweepResults:
    """What a sweep produced; also what `load_sweep` (later) rebuilds from MLflow."""

    spec: SweepSpec
    sweep_id: str
    variants: list[VariantConfig]
    rows: list[dict[str, Any]] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)  # variant hash -> MLflow run id
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. metrics skipped and why
    wall_s: float | None = None
    stats: dict[str, int] = field(default_factory=dict)  # index_builds, index_reused, … (reuse evidence)
    data_info: dict[str, Any] = field(default_factory=dict)  # corpus/eval digests and sizes
    status: str = "FINISHED"  # or KILLED (cancelled) / FAILED

    def questions(self) -> pd.DataFrame:
        """One row per (variant, question), in variant then dataset order."""
        return pd.DataFrame(self.rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per variant: id, label, dotted params, aggregate metrics."""
        records = []
        for v in self.variants:
            rows = [r for r in self.rows if r["variant_hash"] == v.hash]
            records.append(
                {
                    "variant": v.short_hash,
                    "label": v.label(),
                    **v.flat_params(),
                    **aggregate(rows),
                    "llm_judge": self._judge_state(),
                    "run_id": self.run_ids.get(v.hash),
                }
            )
        frame = pd.DataFrame(records)
        return frame.set_index("variant") if not frame.empty else frame

    def _judge_state(self) -> str:
        if self.spec.stage == "retrieve":
            return "n/a (retrieval only)"
        judge = self.spec.judge
        return f"{judge.provider}:{judge.model}" if judge else "off (no judge configured)"

    def variant(self, key: str) -> VariantConfig:
        """Look a variant up by full or short hash (any unique prefix)."""
        matches = [v for v in self.variants if v.hash.startswith(key)]
        if len(matches) != 1:
            known = ", ".join(v.short_hash for v in self.variants)
            raise KeyError(f"{key!r} matches {len(matches)} variants; known: {known}")
        return matches[0]

    def summary(self) -> pd.DataFrame:
        """The compact table the CLI prints."""
        frame = self.to_frame()
        if frame.empty:
            return frame
        cols = [
            c
            for c in (
                "label",
                "hit_at_k",
                "mrr",
                "exact_match",
                "f1",
                "rouge_l",
                "latency_total_p50_s",
                "latency_total_p95_s",
                "tokens_prompt_mean",
                "cost_usd",
                "failed_cells",
            )
            if c in frame.columns
        ]
        return frame[cols]

    # ------------------------------------------------------------ decide (workbench.stats)

    def compare(self, metric: str = "f1") -> pd.DataFrame:
        """Per variant: mean, bootstrap 95 % CI and n of a per-question metric."""
        from workbench.stats import compare

        out = compare(self.questions(), metric)
        out.insert(0, "label", [self.variant(v).label() for v in out.index])
        return out

    def diff(self, a: str, b: str, metric: str = "f1"):
        """Paired by question: mean difference a − b, bootstrap CI and a sign-flip permutation p-value."""
        from workbench.stats import paired_diff

        return paired_diff(self.questions(), self.variant(a).short_hash, self.variant(b).short_hash, metric)

    def pareto(self, quality: str = "f1", cost: str | None = "cost_usd_per_1k", latency: str | None = "latency_total_p95_s") -> pd.DataFrame:
        """The non-dominated variants: highest quality for their cost and latency."""
        from workbench.stats import pareto_front

        frame = self.to_frame()
        objectives = {quality: "max"}
        for col in (cost, latency):
            # an axis nobody could price (no column, or all NaN) says nothing: leave it out
            if col and col in frame.columns and frame[col].notna().any():
                objectives[col] = "min"
        return frame.loc[pareto_front(frame, objectives)]

    def best(self, objective: str = "f1", constraints: dict | None = None, *, maximize: bool = True, alpha: float = 0.05):
        """The winner under constraints, e.g. best("f1", {"latency_total_p95_s": "<= 2"}); see Decision.reason."""
        from workbench.stats import best

        return best(self.to_frame(), self.questions(), objective, constraints, maximize=maximize, alpha=alpha)

    def export(self, variant: str, path, **kwargs):
        """Write the variant as a production YAML with provenance (see workbench.export)."""
        from workbench.export import export_variant

        return export_variant(self, variant, path, **kwargs)
