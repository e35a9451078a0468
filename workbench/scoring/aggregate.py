"""Aggregation is pure: `aggregate(rows)` turns a variant's per-question rows into the flat metric dict
that the DataFrame, the notebook and MLflow all show, so they can never disagree.

Which metrics are averaged comes from the metric catalogue, which measurements are summarised from the
`Cell` declaration; `direction(column)` says which way is better for any column this produces.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from workbench.scoring import catalogue, variance
from workbench.scoring.catalogue import quality_metrics
from workbench.scoring.cell import MEASURES, THIS_SWEEP, latency_source, measure_stem
from workbench.scoring.metrics import percentile, summarize
from workbench.scoring.routing_metrics import routing_aggregates

_SUFFIXES = ("_ci_low", "_ci_high")


def aggregate(rows: Sequence[dict[str, Any]], sweep_id: str | None = None) -> dict[str, float]:
    """Flat metrics for one variant: `f1`, `f1_ci_low`, `f1_ci_high`, `f1_n`, latency p50/p95, tokens, cost.

    With repeats (rows carrying `repeat`, or a judged metric's `<name>_passes`), a metric's mean is over
    questions (each question's answers averaged first), its CI the hierarchical bootstrap's, its n the
    questions, and `<name>_var_question/_var_generation/_var_judge` split its variance (`scoring.variance`).

    Failed cells are left out of every mean; a metric no cell could compute is left out (never 0).

    Latency p50/p95/mean come from the cells whose latency was measured in this sweep (`sweep_id`, see
    `cell.latency_source`; without it, the cells that made their own model call) when there are any, e.g.
    the questions re-timed with `remeasure_latency`; only when every cell reused a cached answer do they
    come from the latencies measured in the earlier run(s), and `SweepResults.latency_warning` says so.
    A cached answer's latency was measured under another run's load, so mixing it in would compare when
    cells ran rather than how fast the variant is.
    """
    ok = [r for r in rows if not r.get("error")]
    timed = [r for r in ok if latency_source(r, sweep_id) == THIS_SWEEP] or ok
    out: dict[str, float] = {"questions": float(len(rows)), "failed_cells": float(len(rows) - len(ok))}
    repeated = any(variance._index(r.get("repeat")) for r in ok)
    for name in quality_metrics(rows):
        s = summarize([r.get(name) for r in ok])
        if s["n"] == 0:
            continue  # not computable for this eval set: leave it out rather than report 0
        out[name] = s["mean"]
        out[f"{name}_ci_low"] = s["ci_low"]
        out[f"{name}_ci_high"] = s["ci_high"]
        out[f"{name}_n"] = float(s["n"])
        if repeated or any(isinstance(r.get(name + variance.PASSES_SUFFIX), list) for r in ok):
            out.update(_with_repeats(ok, name))
    for name in catalogue.names("judged"):
        errors = sum(1 for r in ok if r.get(catalogue.error_of(name)))
        if errors:
            out[f"{name}_failed"] = float(errors)  # judgements that did not parse: excluded from the mean
    for name in (n for n, kind in MEASURES.items() if kind == "latency"):
        values = [r[name] for r in timed if r.get(name) is not None]
        if values:
            stem = measure_stem(name)
            out[f"{stem}_p50_s"] = percentile(values, 50)
            out[f"{stem}_p95_s"] = percentile(values, 95)
            out[f"{stem}_mean_s"] = sum(values) / len(values)
    for name in (n for n, kind in MEASURES.items() if kind == "tokens"):
        values = [r.get(name) for r in ok]
        if ok and all(v is not None for v in values):
            out[name] = float(sum(values))
            out[f"{name}_mean"] = float(sum(values)) / len(values)
    for name in (n for n, kind in MEASURES.items() if kind == "cost"):
        costs = [r.get(name) for r in ok]
        if ok and all(c is not None for c in costs):  # an unknown price is not a free model
            out[name] = float(sum(costs))
            out[f"{name}_per_1k"] = 1000.0 * float(sum(costs)) / len(costs)
    out.update(routing_aggregates(ok))  # routed_share.<model>, escalation_rate, cost CI, cache rates
    return out


def _with_repeats(ok: Sequence[dict[str, Any]], name: str) -> dict[str, float]:
    """Answers repeated or judged more than once: the mean over questions, the CI of the hierarchical
    bootstrap, n in questions, and the variance split (`<name>_var_question/_var_generation/_var_judge`)."""
    long = variance.long_frame([{**r, "variant": ""} for r in ok], name)
    if not variance.has_repeats(long):
        return {}
    ci = variance.hierarchical_bootstrap(long).iloc[0]
    split = variance.variance_split(long).iloc[0]
    out = {name: float(ci["mean"]), f"{name}_ci_low": float(ci["ci_low"]), f"{name}_ci_high": float(ci["ci_high"]),
           f"{name}_n": float(ci["n"])}
    out.update({f"{name}_{c}": float(split[c]) for c in variance.COMPONENTS if split[c] == split[c]})  # NaN: not separable
    return out


def direction(column: str) -> Literal["max", "min"]:
    """Which way is better for a column of `results.to_frame()` or `results.questions()`: a metric's or
    aggregate's declared direction in the catalogue (also for its CI bounds); "min" for latency, tokens,
    cost and failure counts."""
    stem = next((column.removesuffix(s) for s in _SUFFIXES if column.endswith(s)), column)
    if catalogue.is_metric(stem) or catalogue.is_aggregate(stem):  # routing and cache aggregates too
        return catalogue.direction(stem)
    if any(column.endswith(f"_{c}") and catalogue.is_metric(column.removesuffix(f"_{c}")) for c in variance.COMPONENTS):
        return "min"  # a variance component is noise
    if column == "failed_cells" or (column.endswith("_failed") and catalogue.is_metric(column.removesuffix("_failed"))):
        return "min"
    if any(column.startswith(measure_stem(m)) for m in MEASURES):
        return "min"
    return "max"


__all__ = ["aggregate", "direction", "quality_metrics"]
