"""The decide step on a real sweep: compare, diff, pareto, best and figures from SweepResults."""

import subprocess
import sys

import plotly.graph_objects as go

from workbench.analysis.plots import plot_metric_bars, plot_pareto, plot_question_heatmap


def test_compare_diff_pareto_best_on_a_real_sweep(swept):
    _, _, results = swept
    cmp = results.compare("f1")
    assert list(cmp.columns[:1]) == ["label"] and (cmp["n"] == 3).all()
    assert (cmp["ci_low"] <= cmp["mean"]).all() and (cmp["mean"] <= cmp["ci_high"]).all()
    a, b = (v.short_hash for v in results.variants)
    d = results.diff(a, b, "f1")
    assert d.n == 3 and abs(d.mean_diff - (d.mean_a - d.mean_b)) < 1e-12 and 0 < d.p_value <= 1
    front = results.pareto()
    assert 1 <= len(front) <= 2 and set(front.index) <= {a, b}
    decision = results.best("f1", {"latency_total_p95_s": "<= 1000"})
    assert decision.winner in (a, b) and decision.reason
    # an impossible constraint names why each variant was excluded
    import pytest

    with pytest.raises(ValueError, match="no variant meets the constraints"):
        results.best("f1", {"latency_total_p95_s": "<= 0"})


def test_figures_from_a_real_sweep(swept):
    _, _, results = swept
    frame, questions = results.to_frame(), results.questions()
    for fig in (plot_pareto(frame), plot_pareto(frame, x="cost_usd_per_1k"), plot_metric_bars(frame),
                plot_question_heatmap(questions)):
        assert isinstance(fig, go.Figure) and len(fig.data) >= 1
    heat = plot_question_heatmap(questions)
    assert len(heat.data[0].z[0]) == 2  # one column per variant (questions are the rows)


def test_cli_export_best_with_constraint(swept, tmp_path):
    _, spec, results = swept
    out = tmp_path / "best.yaml"
    r = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "export", "--sweep-id", results.sweep_id, "--best", "f1",
         "--constraint", "latency_total_p95_s<=1000", "--out", str(out), "--tracking-uri", spec["tracking"]["tracking_uri"]],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("best: ") and out.is_file()
    r = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "export", "--sweep-id", results.sweep_id, "--best", "f1",
         "--constraint", "latency is fast", "--out", str(out), "--tracking-uri", spec["tracking"]["tracking_uri"]],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and "--constraint: 'latency is fast'" in r.stderr


def test_a_variants_aggregate_is_computed_once_for_the_same_rows(swept):
    import copy

    from workbench.scoring.aggregate import aggregate

    _, _, done = swept
    results = copy.deepcopy(done)  # the session fixture stays as it is
    v = results.variants[0]
    rows = [r for r in results.rows if r["variant_hash"] == v.hash]
    first = results.aggregate(v.hash, rows)
    assert first == aggregate(rows, results.sweep_id)
    assert results.aggregate(v.hash, rows) is first  # the sweep's figures, read back by to_frame
    assert results.to_frame().loc[v.short_hash, "f1"] == first["f1"]
    rows[0]["f1"], rows[0]["judged"] = 1.0 - (rows[0]["f1"] or 0.0), 1.0  # a key added: computed again
    again = results.aggregate(v.hash, rows)
    assert again is not first and again == aggregate(rows, results.sweep_id)
    fewer = results.aggregate(v.hash, rows[1:])  # other rows: computed again
    assert fewer["f1"] == aggregate(rows[1:], results.sweep_id)["f1"]
