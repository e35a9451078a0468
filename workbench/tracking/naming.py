"""What MLflow's UI shows, decided in one place (pure): run names, colours, metric names and rounding,
params with their units.

MLflow's chart view makes a section of each prefix before `/`, sorted by name, and puts the un-prefixed
metrics ("Model metrics") after all of them. So each quality metric gets its own section the way
`mlflow.genai.evaluate` names its scorers' (`{scorer}/mean`): `f1/mean` (first in its section), then
`f1/mean_ci_high`, `f1/mean_ci_low`, `f1/n`; the measurements (`latency_total_p95_s`, `tokens_prompt`,
`cost_usd`, `questions`, `failed_cells`) and the catalogue's declared aggregates (`cost_usd_per_1k`,
`escalation_rate`, `cache_hit_rate`, with their CIs) stay un-prefixed, in the last section, so an all-zero
`cost_usd_per_1k` is never the first chart. Only what is logged is rounded; the analysis reads the per-question table.

>>> mlflow_metrics({"cost_usd": 0.0, "f1": 0.4666666666666666, "f1_ci_low": 0.3, "f1_n": 20.0})
{'f1/mean': 0.4667, 'cost_usd': 0.0, 'f1/mean_ci_low': 0.3, 'f1/n': 20.0}
>>> metric_name("latency_total_p95_s"), metric_name("ndcg_at_10")
('latency_total_p95_s', 'ndcg_at_10/mean')
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.spec import SweepSpec, VariantConfig

SIGNIFICANT = 4

# Tableau 10: distinct, colour-blind-aware hues; MLflow reads a run's colour from its `mlflow.runColor`
# tag (the UI keeps a user's own choice in the browser's local state, which wins).
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
PARENT_COLOUR = "#555555"

_SUFFIXES = (("_ci_low", "mean_ci_low"), ("_ci_high", "mean_ci_high"), ("_n", "n"), ("_failed", "failed"),
             ("_var_question", "var_question"), ("_var_generation", "var_generation"), ("_var_judge", "var_judge"))


def round_sig(value: float, digits: int = SIGNIFICANT) -> float:
    """`value` to `digits` significant digits (0.4666666666666666 -> 0.4667); nan and inf unchanged."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def metric_name(flat: str, means: frozenset[str] | set[str] = frozenset()) -> str:
    """A variant's flat aggregate name (`aggregate()`) as logged to MLflow. `means`: the quality metrics
    of these aggregates (see `mlflow_metrics`); catalogue metrics are known without it."""
    from workbench.scoring import catalogue

    def is_metric(name: str) -> bool:  # a declared aggregate (cost per 1k, escalation rate) has a CI, not a section
        return catalogue.is_metric(name) or (name in means and not catalogue.is_aggregate(name))

    if is_metric(flat):
        return f"{flat}/mean"
    for suffix, stat in _SUFFIXES:
        stem = flat.removesuffix(suffix)
        if stem != flat and is_metric(stem):
            return f"{stem}/{stat}"
    return flat  # measurements and counts


def mlflow_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A variant's aggregates, renamed into chart sections and rounded for display. The means are logged
    first, then the measurements, then the spreads: the Evaluation runs table shows metric columns in the
    order they were first logged."""
    # A quality metric is what `aggregate()` gave a CI: this also covers metrics registered in the user's
    # process, which the logging process's catalogue does not know.
    means = {k.removesuffix("_ci_low") for k in metrics if k.endswith("_ci_low")}
    spreads = {f"{m}{s}" for m in means for s in ("_ci_low", "_ci_high", "_n")}  # an aggregate's CI is a spread too
    named = {metric_name(k, means): (round_sig(float(v)), k in spreads) for k, v in metrics.items()}
    rank = lambda k, spread: 0 if k.endswith("/mean") else 2 if "/" in k or spread else 1  # noqa: E731
    ordered = sorted(named.items(), key=lambda kv: rank(kv[0], kv[1][1]))  # stable within each rank
    return {k: v for k, (v, _) in ordered}


def mlflow_params(variant: VariantConfig) -> dict[str, Any]:
    """The variant's params with the chunk size's unit in its name (characters for `recursive`, tokens
    for `token`), so one axis never mixes the two; `none` has no size. The spec's fields are unchanged."""
    params = variant.flat_params()
    size, overlap = params.pop("chunking.size", None), params.pop("chunking.overlap", None)
    unit = {"recursive": "chars", "token": "tokens"}.get(variant.chunking.strategy)
    if unit is not None:
        params[f"chunking.size_{unit}"], params[f"chunking.overlap_{unit}"] = size, overlap
    return params


def variant_run_name(variant: VariantConfig) -> str:
    """The label first (what the UI's narrow column shows), then a short hash to tell twins apart."""
    return f"{variant.label()} · {variant.short_hash[:7]}"[:250]


def sweep_run_name(spec: SweepSpec, n_variants: int, n_questions: Any, started: float) -> str:
    """`quickstart · 4 variants × 20 q · 2026-11-29 21:04:07`: which sweep, how big, when (local time)."""
    size = f"{n_variants} variant{'s' if n_variants != 1 else ''}"
    if n_questions is not None:
        size += f" × {n_questions} q"
    return f"{spec.name} · {size} · {datetime.fromtimestamp(started):%Y-%m-%d %H:%M:%S}"[:250]


def run_colour(index: int) -> str:
    """The colour of the variant at `index` in the spec's order (the palette cycles after ten)."""
    return PALETTE[index % len(PALETTE)]
