"""Sweep results as pandas: one row per variant (`to_frame`) or per (variant, question) (`questions`).

The aggregate metrics come from `workbench.scoring.aggregate`, the same function MLflow's runs are logged with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.spec import SweepSpec, VariantConfig
from workbench.scoring.aggregate import aggregate, direction

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

    # ------------------------------------------------------------ decide (workbench.analysis.stats)

    def compare(self, metric: str = "f1") -> pd.DataFrame:
        """Per variant: mean, bootstrap 95 % CI and n of a per-question metric."""
        from workbench.analysis.stats import compare

        out = compare(self.questions(), metric)
        out.insert(0, "label", [self.variant(v).label() for v in out.index])
        return out

    def diff(self, a: str, b: str, metric: str = "f1"):
        """Paired by question: mean difference a − b, bootstrap CI and a sign-flip permutation p-value."""
        from workbench.analysis.stats import paired_diff

        return paired_diff(self.questions(), self.variant(a).short_hash, self.variant(b).short_hash, metric)

    def pareto(self, quality: str = "f1", cost: str | None = "cost_usd_per_1k", latency: str | None = "latency_total_p95_s") -> pd.DataFrame:
        """The non-dominated variants: best quality (in the metric's declared direction) for their cost and latency."""
        from workbench.analysis.stats import pareto_front

        frame = self.to_frame()
        objectives = {quality: direction(quality)}
        for col in (cost, latency):
            # an axis nobody could price (no column, or all NaN) says nothing: leave it out
            if col and col in frame.columns and frame[col].notna().any():
                objectives[col] = "min"
        return frame.loc[pareto_front(frame, objectives)]

    def best(self, objective: str = "f1", constraints: dict | None = None, *, maximize: bool | None = None,
             alpha: float = 0.05):
        """The winner under constraints, e.g. best("f1", {"latency_total_p95_s": "<= 2"}); see Decision.reason.
        `maximize=None`: the objective's declared direction (higher f1, lower latency)."""
        from workbench.analysis.stats import best

        return best(self.to_frame(), self.questions(), objective, constraints, maximize=maximize, alpha=alpha)

    def export(self, variant: str, path, **kwargs):
        """Write the variant as a production YAML with provenance (see workbench.handover.export)."""
        from workbench.handover.export import export_variant

        return export_variant(self, variant, path, **kwargs)
