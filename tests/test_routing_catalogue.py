"""Routing and caching aggregates are declared in the metric catalogue (issue 16): `best()`, `pareto()`,
`compare`, the plots' labels and MLflow's chart order all read their direction and label from there.

Hand-made cells of three variants (no model, no endpoint): the numbers are counted here, not by the code."""

from __future__ import annotations

import pytest

from conftest import small_spec
from workbench.analysis.plots import plot_metric_bars, plot_pareto
from workbench.analysis.results import SweepResults
from workbench.scoring import catalogue, routing_metrics
from workbench.scoring.aggregate import aggregate, direction
from workbench.spec import load_spec
from workbench.tracking.naming import mlflow_metrics

# Per variant, four questions: (routed_to, escalated, cost_usd, f1) and whether the cache served it.
PLAN = {
    "a": [("large", True, 0.02, 1.0), ("large", True, 0.02, 1.0), ("large", True, 0.02, 1.0), ("small", False, 0.001, 0.0)],
    "b": [("small", False, 0.001, 1.0), ("large", True, 0.02, 1.0), ("small", False, 0.001, 0.0), ("small", False, 0.001, 1.0)],
    "c": [("small", False, 0.001, 0.0), ("small", False, 0.001, 0.0), ("small", False, 0.001, 1.0), ("small", False, 0.001, 0.0)],
}
HITS = {"a": 0, "b": 1, "c": 3}  # the first HITS[v] questions of a variant were cache hits (none wrong)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    spec = load_spec(small_spec(tmp_path_factory.mktemp("routing-catalogue"),
                                retrieval=[{"kind": "bm25", "k": k} for k in (1, 2, 3)]))
    variants = spec.variants()
    rows = []
    for v, (name, cells) in zip(variants, PLAN.items()):
        for i, (to, escalated, cost, f1) in enumerate(cells):
            hit = i < HITS[name]
            rows.append({"variant_hash": v.hash, "variant": v.short_hash, "question_id": f"q{i}", "question": f"q{i}?",
                         "error": None, "f1": f1, "cost_usd": cost, "routed_to": to, "escalated": escalated,
                         "cache_hit": "exact" if hit else None, "cache_wrong_hit": False if hit else None,
                         "cache_saved_usd": cost if hit else None, "cache_saved_s": 0.1 * (i + 1) if hit else None})
    res = SweepResults(spec=spec, sweep_id="s", variants=variants, rows=rows)
    return res, {name: v.short_hash for name, v in zip(PLAN, variants)}


def test_routing_aggregates_are_declared_once_in_the_catalogue():
    for name, way, bounds in (("escalation_rate", "min", (0.0, 1.0)), ("cache_hit_rate", "max", (0.0, 1.0)),
                              ("cache_wrong_hit_rate", "min", (0.0, 1.0)), ("cost_usd_per_1k", "min", None),
                              ("routed_share.large", "max", (0.0, 1.0)), ("cache_saved_usd_per_1k", "max", None)):
        assert catalogue.is_aggregate(name) and not catalogue.is_metric(name)  # never scored per cell
        assert (catalogue.direction(name), catalogue.bounds(name)) == (way, bounds), name
        assert catalogue.label(name) and catalogue.label(name) != name
    assert catalogue.aggregate_of("routed_share.small").better is None  # which model answered: neither way is better
    assert direction("escalation_rate_ci_high") == "min" and direction("escalated") == "min"
    assert not hasattr(routing_metrics, "DIRECTIONS") and not hasattr(routing_metrics, "direction")  # one table
    assert "escalation_rate" not in catalogue.quality_metrics([{"escalation_rate": 0.5}])
    with pytest.raises(ValueError, match="already in the catalogue"):
        catalogue.register(catalogue.Metric("cache_hit_rate", "answer", "x", fn=lambda a, r: 1.0))


def test_best_pareto_and_compare_follow_the_declared_directions(results):
    res, vid = results
    frame = res.to_frame()
    assert frame.loc[vid["a"], "escalation_rate"] == 0.75 and frame.loc[vid["c"], "escalation_rate"] == 0.0
    assert frame.loc[vid["c"], "cache_hit_rate"] == 0.75
    assert res.best("escalation_rate").winner == vid["c"]  # lower is better: no escalation at all
    assert res.best("cache_hit_rate").winner == vid["c"]  # higher is better
    assert res.best("escalation_rate", constraints={"cache_hit_rate": "<= 0.25"}).winner == vid["b"]
    # quality = cache hit rate (up), cost down: c is cheapest and hits most; a and b are dominated by it
    assert list(res.pareto(quality="cache_hit_rate", cost="cost_usd_per_1k", latency=None).index) == [vid["c"]]
    escalated = res.compare("escalated")  # per question, 0/1: the escalation share with its CI, fewest first
    assert list(escalated.index) == [vid["c"], vid["b"], vid["a"]] and escalated["mean"].tolist() == [0.0, 0.25, 0.75]
    # time saved by the cache per hit, higher is better (c saved 0.2 s a hit on average, b 0.1, a had no hit: last)
    assert list(res.compare("cache_saved_s").index) == [vid["c"], vid["b"], vid["a"]]


def test_the_plots_label_routing_aggregates_readably(results):
    res, _ = results
    frame = res.to_frame()
    fig = plot_pareto(frame, quality="f1", x="escalation_rate")
    assert fig.layout.xaxis.title.text == "escalation rate, lower is better"
    fig = plot_pareto(frame, quality="cache_hit_rate", x="cost_usd_per_1k")
    assert fig.layout.yaxis.title.text == "cache hit rate" and list(fig.layout.yaxis.range)[0] < 0  # its 0..1 range
    assert fig.layout.title.text.startswith("cache hit rate vs cost per 1,000 questions (USD) (up and left")
    fig = plot_pareto(frame, quality="f1", x="cache_hit_rate")  # x in its declared direction: higher is better
    assert fig.layout.xaxis.title.text == "cache hit rate, higher is better"
    bars = plot_metric_bars(frame, ["escalation_rate"])
    assert bars.layout.annotations[0].text == "escalation rate"
    assert bars.layout.xaxis.title.text == "lower is better" and tuple(bars.layout.xaxis.range) == (0.0, 1.0)


def test_mlflow_keeps_routing_aggregates_out_of_the_first_charts(results):
    res, _ = results
    logged = list(mlflow_metrics(aggregate(res.rows[:4])))
    sections = {k.split("/")[0] for k in logged if "/" in k}
    assert sections == {"f1"}  # an all-zero cost per 1k is never a chart section of its own, let alone the first
    assert logged[0] == "f1/mean"
    assert logged.index("escalation_rate") < logged.index("f1/mean_ci_low") < logged.index("escalation_rate_ci_low")
