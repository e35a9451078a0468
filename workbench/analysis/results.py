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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from workbench.spec import SweepSpec, VariantConfig
from workbench.analysis import provenance
from workbench.scoring import catalogue
from workbench.scoring.aggregate import aggregate, direction

SUMMARY_COLUMNS = ("label", "hit_at_k", "mrr", "exact_match", "f1", "rouge_l", "latency_total_p50_s",
                   "latency_total_p95_s", "tokens_prompt_mean", "cost_usd", "failed_cells")


def _ranked(frame: pd.DataFrame, metric: str) -> list[str]:
    """Variants with a value of `metric`, best first in its direction."""
    if metric not in frame.columns:
        return []
    return frame[metric].dropna().sort_values(ascending=direction(metric) == "min", kind="stable").index.tolist()


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
    # a halving / optuna search: strategy, rungs, per variant hash {rung, questions, stopped (why, or None)},
    # winner, tied, reason (runner/search); empty for a grid
    search: dict[str, Any] = field(default_factory=dict)
    # variant hash -> (the rows it was computed from, as ids and key count; the aggregate): see `aggregate`
    _aggregates: dict[str, tuple[tuple, dict]] = field(default_factory=dict, repr=False, compare=False)

    def aggregate(self, variant_hash: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """`scoring.aggregate(rows)`, computed once for the same rows (~30 ms a variant, its bootstrap CIs): the
        sweep computes it as each variant finishes and the CLI's table, after the last call, reads it back."""
        # the same row objects, no key added since, the same metrics in the catalogue
        seen = (frozenset(map(id, rows)), sum(map(len, rows)), catalogue.state())
        memo = self._aggregates.get(variant_hash)
        if memo is None or memo[0] != seen:
            memo = self._aggregates[variant_hash] = (seen, aggregate(rows, self.sweep_id))
        return memo[1]

    def stopped(self) -> dict[str, str]:
        """A search's variants that did not answer the whole eval set: short hash -> where and why they stopped."""
        out = {}
        for v in self.variants:
            state = (self.search.get("variants") or {}).get(v.hash)
            if state and state.get("stopped"):
                out[v.short_hash] = f"stopped by the search at rung {state['rung']} after {state['questions']} questions: {state['stopped']}"
        return out

    def finalists(self) -> SweepResults:
        """These results without the variants a search stopped: what answered the same, whole question set,
        so every comparison (best, pareto, compare, the plots) pairs like with like. A grid: itself."""
        stopped = self.stopped()
        if not stopped:
            return self
        keep = [v for v in self.variants if v.short_hash not in stopped]
        hashes = {v.hash for v in keep}
        return dataclasses.replace(self, variants=keep, rows=[r for r in self.rows if r["variant_hash"] in hashes])
    labels: list[dict[str, Any]] = field(default_factory=list)  # human labels (analysis/labelling.py)

    def questions(self) -> pd.DataFrame:
        """One row per (variant, question), in variant then dataset order."""
        import pandas as pd
        return pd.DataFrame(self.rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per variant: id, label, dotted params, aggregate metrics."""
        import pandas as pd
        records = []
        for v in self.variants:
            rows = [r for r in self.rows if r["variant_hash"] == v.hash]
            records.append(
                {
                    "variant": v.short_hash,
                    "label": v.label(),
                    **v.flat_params(),
                    **self.aggregate(v.hash, rows),
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

    def summary_records(self) -> list[dict[str, Any]]:
        """The CLI's table as plain rows, one per variant: its short hash, label and headline metrics (those
        any variant has). No pandas: the CLI prints these without importing it (~0.4 s of CPU beside a sweep)."""
        records = [{"variant": v.short_hash, "label": v.label(),
                    **self.aggregate(v.hash, [r for r in self.rows if r["variant_hash"] == v.hash])}
                   for v in self.variants]
        present = [c for c in SUMMARY_COLUMNS if any(c in r for r in records)]
        return [{"variant": r["variant"], **{c: r.get(c) for c in present}} for r in records]

    def summary_text(self) -> str:
        """`summary_records` as the text table the CLI prints."""
        from workbench.analysis.text_table import text_table

        return text_table(self.summary_records())

    def summary(self) -> pd.DataFrame:
        """The compact table the CLI prints, as a frame indexed by variant."""
        import pandas as pd

        frame = pd.DataFrame(self.summary_records())
        return frame.set_index("variant") if not frame.empty else frame

    # ------------------------------------------------------------ decide (workbench.analysis.stats)

    def compare(self, metric: str = "f1") -> pd.DataFrame:
        """Per variant: mean, bootstrap 95 % CI and n of a per-question metric."""
        from workbench.analysis.stats import compare

        if self.stopped():  # a search's stopped variants answered fewer questions: not ranked with the rest
            return self.finalists().compare(metric)
        self._warn_latency([metric], per_question=True)
        out = compare(self.questions(), metric)
        out.insert(0, "label", [self.variant(v).label() for v in out.index])
        return out

    def diff(self, a: str, b: str, metric: str = "f1"):
        """Paired by question: mean difference a − b, bootstrap CI and a sign-flip permutation p-value."""
        from workbench.analysis.stats import paired_diff

        self._warn_latency([metric], per_question=True)
        return paired_diff(self.questions(), self.variant(a).short_hash, self.variant(b).short_hash, metric)

    def pareto(self, quality: str = "f1", cost: str | None = "cost_usd_per_1k", latency: str | None = "latency_total_p95_s",
               *, alpha: float = 0.05, correction: str = "holm") -> pd.DataFrame:
        """The non-dominated variants: best quality (in the metric's declared direction) for their cost and latency.

        With per-question `quality` scores, two more columns: `{quality}_p_vs_leader` (the quality leader
        against each variant, p adjusted over every pair with `correction`) and `{quality}_tied` (not
        significantly worse than the leader: on quality, the front's points in the tied set are equals)."""
        from workbench.analysis.stats import pareto_front

        if self.stopped():
            return self.finalists().pareto(quality, cost, latency)
        frame = self.to_frame()
        self._warn_latency([quality, cost if cost in frame.columns else None, latency if latency in frame.columns else None])
        objectives = {quality: direction(quality)}
        for col in (cost, latency):
            # an axis nobody could price (no column, or all NaN) says nothing: leave it out
            if col and col in frame.columns and frame[col].notna().any():
                objectives[col] = "min"
        front = frame.loc[pareto_front(frame, objectives)]
        tests = self._leader_tests(frame, quality, alpha, correction)
        if tests is None:
            return front
        return front.assign(**{
            f"{quality}_p_vs_leader": [tests.p_adjusted.get(v, float("nan")) for v in front.index],
            f"{quality}_tied": [v in tests.tied for v in front.index],
        })

    def _leader_tests(self, frame: pd.DataFrame, metric: str, alpha: float, correction: str):
        from workbench.analysis.family import leader_tests
        from workbench.analysis.paired import score_columns

        questions = self.questions()
        if questions.empty or metric not in score_columns(questions) or metric not in frame.columns:
            return None
        ranked = _ranked(frame, metric)
        if len(ranked) < 2:
            return None
        return leader_tests(questions, ranked[0], ranked[1:], metric, maximize=direction(metric) == "max",
                            alpha=alpha, correction=correction)

    def best(self, objective: str = "f1", constraints: dict | None = None, *, maximize: bool | None = None,
             alpha: float = 0.05, correction: str = "holm"):
        """The winner under constraints, e.g. best("f1", {"latency_total_p95_s": "<= 2"}); see Decision.reason.
        `maximize=None`: the objective's declared direction (higher f1, lower latency). `correction`: how the
        top's comparisons are corrected for their number (Holm; see `analysis.family.CORRECTIONS`)."""
        from workbench.analysis.stats import StatsError, best

        stopped = self.stopped()
        if stopped:  # compared only on the questions every finalist answered; the stopped say why they are out
            decision = self.finalists().best(objective, constraints, maximize=maximize, alpha=alpha)
            return dataclasses.replace(decision, excluded={**decision.excluded, **stopped},
                                       reason=f"{decision.reason}; {len(stopped)} variant(s) stopped by the search "
                                              "are not compared (they did not answer every question)")
        frame = self.to_frame()
        decision = best(frame, self.questions(), objective, constraints, maximize=maximize, alpha=alpha, correction=correction)
        # the latency tie-break counts too when it decided (the reason then names the column)
        used = [objective, *(constraints or {}), *(c for c in frame.columns if str(c) in decision.reason)]
        message = self._warn_latency(used)
        power = None
        if decision.significant is False and decision.diff is not None and decision.diff.mean_diff != 0:
            gap = abs(decision.diff.mean_diff)  # how many questions would settle the top vs runner-up gap seen
            try:
                power = self.power(objective, gap, decision.diff.a, decision.diff.b, alpha=alpha).statement()
            except StatsError:
                power = None  # fewer than two shared questions: nothing to plan from
        return dataclasses.replace(decision, warnings=[message] if message else [], power=power)

    def power(self, metric: str = "f1", delta: float = 0.05, a: str | None = None, b: str | None = None, *,
              alpha: float = 0.05, target: float = 0.8):
        """The power of telling `a` from `b` (default: the top two on `metric`) apart when they truly differ by
        `delta`, and the questions (and repeats) needed at `target` power, from this sweep's paired variance;
        see `analysis.power.PowerPlan` (`.statement()` is the sentence `workbench plan` prints)."""
        from workbench.analysis.power import plan
        from workbench.analysis.stats import StatsError

        ranked = _ranked(self.to_frame(), metric) if a is None or b is None else []
        if (a is None or b is None) and len(ranked) < 2:
            raise StatsError(f"power needs two variants with {metric!r} scores; this sweep has {len(ranked)}")
        try:
            a = self.variant(a).short_hash if a else ranked[0]
            b = self.variant(b).short_hash if b else next(v for v in ranked if v != a)
        except KeyError as exc:
            raise StatsError(f"variant {exc.args[0]}") from None
        return plan(self.questions(), a, b, metric, delta, alpha=alpha, target=target)

    def variance_split(self, metric: str = "f1") -> pd.DataFrame:
        """Per variant: the question, generation and judge variance of `metric` and their shares (a sweep with
        repeats; `analysis.plots.variance`, whose `plot_variance_split` draws it)."""
        from workbench.analysis.plots.variance import variance_info

        return variance_info(self.to_frame(), metric).table

    def power_warning(self, metric: str = "f1", variants: list[str] | None = None, *, alpha: float = 0.05) -> str | None:
        """The warning when the eval set is too small to separate the top two of `variants` (default all)
        on `metric` at 80 % power, else None (the Results tab shows it)."""
        from workbench.analysis.paired import score_columns
        from workbench.analysis.power import too_small

        questions = self.questions()
        if questions.empty or metric not in score_columns(questions):
            return None
        frame = self.to_frame()
        if variants is not None:
            frame = frame.loc[[v for v in frame.index if v in set(variants)]]
        return too_small(questions, _ranked(frame, metric), metric, alpha=alpha)

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
