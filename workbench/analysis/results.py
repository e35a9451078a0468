"""Sweep results as pandas: one row per variant (`to_frame`) or per (variant, question) (`questions`).

The aggregate metrics come from `workbench.scoring.aggregate`, the same function MLflow's runs are logged with.
Latency aggregates use the cells timed in this sweep when there are any (see `aggregate`); where each
variant's latencies were measured is `latency_provenance()`, and `best` / `pareto` / `compare` on a latency
column warn (`LatencyProvenanceWarning`, also `Decision.warnings`) when the comparison mixes runs.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.spec import SweepSpec, VariantConfig
from workbench.analysis import provenance
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
    tracking_uri: str | None = None  # the store load_sweep read it from (the spec's may be relative to elsewhere)
    labels: list[dict[str, Any]] = field(default_factory=list)  # human labels (analysis/labelling.py)

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
                    **aggregate(rows, self.sweep_id),
                    "llm_judge": self._judge_state(),
                    "run_id": self.run_ids.get(v.hash),
                }
            )
        frame = pd.DataFrame(records)
        return frame.set_index("variant") if not frame.empty else frame

    def latency_provenance(self) -> pd.DataFrame:
        """Per variant: how many of its cells' latencies were measured in this sweep, how many are cached
        answers timed in an earlier run (and which), which its latency aggregates use (`latency_basis`) and
        `measured_here_share` (0..1); see `analysis.provenance.latency_provenance` for every column."""
        return provenance.latency_provenance(self.rows, self.variants, self.sweep_id)

    def latency_warning(self, *, per_question: bool = False) -> str | None:
        """The one warning when comparing these variants' latencies mixes runs (naming the variants, how
        many of their cells were measured elsewhere, and `--remeasure-latency N` as the fix), else None."""
        return provenance.latency_warning(self.rows, self.variants, self.sweep_id, per_question=per_question)

    def _warn_latency(self, columns, *, per_question: bool = False) -> str | None:
        """Warn (once per call) when a latency column is compared and the latencies mix runs."""
        if not any(str(c).startswith("latency") for c in columns if c):
            return None
        message = self.latency_warning(per_question=per_question)
        if message:
            warnings.warn(message, provenance.LatencyProvenanceWarning, stacklevel=3)
        return message

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

        self._warn_latency([metric], per_question=True)
        out = compare(self.questions(), metric)
        out.insert(0, "label", [self.variant(v).label() for v in out.index])
        return out

    def diff(self, a: str, b: str, metric: str = "f1"):
        """Paired by question: mean difference a − b, bootstrap CI and a sign-flip permutation p-value."""
        from workbench.analysis.stats import paired_diff

        self._warn_latency([metric], per_question=True)
        return paired_diff(self.questions(), self.variant(a).short_hash, self.variant(b).short_hash, metric)

    def pareto(self, quality: str = "f1", cost: str | None = "cost_usd_per_1k", latency: str | None = "latency_total_p95_s") -> pd.DataFrame:
        """The non-dominated variants: best quality (in the metric's declared direction) for their cost and latency."""
        from workbench.analysis.stats import pareto_front

        frame = self.to_frame()
        self._warn_latency([quality, cost if cost in frame.columns else None, latency if latency in frame.columns else None])
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

        frame = self.to_frame()
        decision = best(frame, self.questions(), objective, constraints, maximize=maximize, alpha=alpha)
        # the latency tie-break counts too when it decided (the reason then names the column)
        used = [objective, *(constraints or {}), *(c for c in frame.columns if str(c) in decision.reason)]
        message = self._warn_latency(used)
        return dataclasses.replace(decision, warnings=[message]) if message else decision

    # ------------------------------------------------------------ human labels (workbench.analysis.labelling)

    def label(self, variant: str, question: str, verdict: str, corrected: str | None = None, note: str | None = None):
        """Label an answer correct / partly / wrong (optionally a corrected answer and a note), in MLflow."""
        from workbench.analysis import labelling

        return labelling.label(self, variant, question, verdict, corrected, note)

    def labels_frame(self) -> pd.DataFrame:
        from workbench.analysis.labelling import labels_frame

        return labels_frame(self)

    def review_queue(self, pass_metric: str | None = None) -> pd.DataFrame:
        from workbench.analysis.labelling import review_queue

        return review_queue(self, pass_metric)

    def promote_corrections(self, out=None):
        from workbench.analysis.labelling import promote_corrections

        return promote_corrections(self, out)

    def judge_agreement(self, *, min_labels: int | None = None, log: bool = True) -> pd.DataFrame:
        """Accuracy and Cohen's κ (with CIs) of each judged metric against the human labels."""
        from workbench.analysis.labelling import MIN_LABELS, judge_agreement

        return judge_agreement(self, min_labels=min_labels or MIN_LABELS, log=log)

    def export(self, variant: str, path, **kwargs):
        """Write the variant as a production YAML with provenance (see workbench.handover.export)."""
        from workbench.handover.export import export_variant

        return export_variant(self, variant, path, **kwargs)
