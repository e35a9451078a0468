"""workbench.analysis.plots: the info functions' numbers and the figures built from them (no browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.analysis.plots import (
    HeatmapInfo,
    MetricBarsInfo,
    ParetoInfo,
    heatmap_info,
    metric_bars_info,
    pareto_info,
    plot_metric_bars,
    plot_pareto,
    plot_question_heatmap,
    short_labels,
)
from workbench.analysis.stats import StatsError, pareto_front


@pytest.fixture
def frame() -> pd.DataFrame:
    """A to_frame()-like frame: 5 variants; v2 dominated by v1, v4 ties v1, v5 has no latency."""
    index = pd.Index(["v1aaaaaaaaaa", "v2bbbbbbbbbb", "v3cccccccccc", "v4dddddddddd", "v5eeeeeeeeee"], name="variant")
    return pd.DataFrame(
        {
            "label": ["fixed256 · dense@3", "fixed256 · bm25@3", "fixed512 · hybrid@5", "fixed256 · dense@3", "none · dense@1"],
            "retrieval.kind": ["dense", "bm25", "hybrid", "dense", "dense"],
            "f1": [0.50, 0.40, 0.60, 0.50, 0.90],
            "f1_ci_low": [0.42, 0.30, 0.50, 0.41, 0.80],
            "f1_ci_high": [0.58, 0.49, 0.70, 0.60, 0.97],
            "f1_n": [20.0, 20.0, 20.0, 19.0, 20.0],
            "exact_match": [0.30, 0.20, 0.35, 0.30, 0.70],
            "exact_match_ci_low": [0.10, 0.05, 0.15, 0.10, 0.50],
            "exact_match_ci_high": [0.50, 0.40, 0.55, 0.50, 0.90],
            "exact_match_n": [20.0, 20.0, 20.0, 19.0, 20.0],
            "latency_total_p95_s": [1.0, 2.0, 3.0, 1.0, np.nan],
            "tokens_prompt_mean": [410.0, 390.0, 820.0, 410.0, 1900.0],
            "cost_usd_per_1k": [0.0, 0.0, 0.0, 0.0, 0.0],
            "questions": [20.0] * 5,
        },
        index=index,
    )


def questions() -> pd.DataFrame:
    """3 variants × 4 questions with known spreads: q2 splits them most, q0 not at all, q3 unscored."""
    scores = {
        "v1aaaaaaaaaa": [1.0, 0.5, 1.0, None],
        "v2bbbbbbbbbb": [1.0, 0.0, 0.0, None],
        "v3cccccccccc": [1.0, 0.5, 0.0, None],
    }
    rows = []
    for v, values in scores.items():
        for i, value in enumerate(values):
            rows.append(
                {
                    "variant": v,
                    "variant_hash": v * 5,
                    "question_id": f"q{i}",
                    "question": f"What is thing number {i}?",
                    "answer": f"{v[:2]} says {i}",
                    "error": "HTTP 500 from the model" if (v, i) == ("v2bbbbbbbbbb", 1) else None,
                    "f1": value,
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- pareto


def test_pareto_info_marks_the_same_front_as_stats(frame):
    info = pareto_info(frame)
    assert isinstance(info, ParetoInfo)
    assert (info.quality, info.x, info.x_goal) == ("f1", "latency_total_p95_s", "min")
    expected = pareto_front(frame, {"f1": "max", "latency_total_p95_s": "min"})
    assert expected == ["v1aaaaaaaaaa", "v3cccccccccc", "v4dddddddddd"]
    assert info.points.loc[info.points["on_front"], "variant"].tolist() == expected
    assert info.front == [(1.0, 0.5), (1.0, 0.5), (3.0, 0.6)]  # sorted by x; the tie is kept
    assert info.missing == ("v5eeeeeeeeee",)  # no latency: cannot be placed
    assert info.points["variant"].tolist() == ["v1aaaaaaaaaa", "v2bbbbbbbbbb", "v3cccccccccc", "v4dddddddddd"]
    assert info.points[["ci_low", "ci_high", "n"]].iloc[1].tolist() == [0.30, 0.49, 20.0]


def test_pareto_hover_shows_label_quality_with_ci_x_cost_and_tokens(frame):
    hover = pareto_info(frame).points.set_index("variant").at["v3cccccccccc", "hover"]
    for part in ["fixed512 · hybrid@5", "f1 0.6 [0.5, 0.7] (n=20)", "total latency p95 (s): 3", "cost per 1k questions: $0", "prompt tokens per question: 820"]:
        assert part in hover


def test_plot_pareto_draws_every_placed_variant_and_a_step_line_through_the_front(frame):
    fig = plot_pareto(frame)
    assert isinstance(fig, go.Figure)
    assert [t.name for t in fig.data] == ["dominated", "on the front", "Pareto front"]
    dominated, front, line = fig.data
    assert list(dominated.x) == [2.0] and list(dominated.y) == [0.4]
    assert sorted(zip(front.x, front.y)) == [(1.0, 0.5), (1.0, 0.5), (3.0, 0.6)]
    assert list(zip(line.x, line.y)) == pareto_info(frame).front
    assert line.line.shape == "hv"
    assert list(front.error_y.array) == pytest.approx([0.08, 0.10, 0.10])  # ci_high - f1
    assert list(front.error_y.arrayminus) == pytest.approx([0.08, 0.10, 0.09])  # f1 - ci_low
    assert fig.layout.xaxis.title.text == "total latency p95 (s), lower is better"
    assert fig.layout.yaxis.title.text == "f1"
    assert "not shown, no value: v5eeeeeeeeee" in fig.layout.title.text
    assert list(front.customdata) == ["v1aaaaaaaaaa", "v3cccccccccc", "v4dddddddddd"]  # a click names its variant
    assert list(front.text) == ["fixed256 · dense@3 [v1aaaaaaaaaa]", "fixed512 · hybrid@5", "fixed256 · dense@3 [v4dddddddddd]"]
    assert "markers+text" in front.mode and list(dominated.text) == ["fixed256 · bm25@3"]
    assert fig.layout.width is None and fig.layout.autosize  # fills the widget, no fixed width
    assert list(fig.layout.yaxis.range)[0] < 0 and list(fig.layout.yaxis.range)[1] > 1  # f1's whole [0, 1]


def test_quality_vs_cost_works_when_everything_is_free(frame):
    info = pareto_info(frame, x="cost_usd_per_1k")
    assert info.points.loc[info.points["on_front"], "variant"].tolist() == ["v5eeeeeeeeee"]  # best f1 at the same cost
    assert info.front == [(0.0, 0.9)]
    fig = plot_pareto(frame, x="cost_usd_per_1k")
    assert len(fig.data[0].x) + len(fig.data[1].x) == 5
    assert fig.layout.xaxis.title.text == "cost per 1,000 questions (USD), lower is better"


def test_pareto_with_x_to_maximise_steps_the_other_way(frame):
    info = pareto_info(frame, quality="f1", x="tokens_prompt_mean", x_goal="max")
    assert info.points.loc[info.points["on_front"], "variant"].tolist() == ["v5eeeeeeeeee"]
    assert plot_pareto(frame, x="tokens_prompt_mean", x_goal="max").data[2].line.shape == "vh"


def test_pareto_errors_name_the_argument_and_the_choices(frame):
    with pytest.raises(StatsError, match=r"quality='f2' is not a numeric column.*exact_match.*latency_total_p95_s"):
        pareto_info(frame, quality="f2")
    with pytest.raises(StatsError, match=r"x='label' is not a numeric column"):
        plot_pareto(frame, x="label")
    with pytest.raises(StatsError, match=r"x_goal='lowest'"):
        pareto_info(frame, x_goal="lowest")


# ---------------------------------------------------------------- labels


def twenty_four() -> pd.DataFrame:
    """24 variants as a quickstart-like grid: 3 chunkings × 4 retrievals × 2 models, long labels."""
    labels, index = [], []
    for c in ("recursive500/50", "recursive1000/100", "token128/16"):
        for r in ("dense@3", "bm25@3", "hybrid@5", "dense@10"):
            for m in ("SmolLM2-135M-Instruct-Q8_0", "gpt-4o-mini"):
                labels.append(f"{c} · all-MiniLM-L6-v2 · {r} · concise · {m}")
                index.append(f"{len(index):02d}" + "abcdef012345"[: 10])
    rng = np.random.default_rng(7)
    f1 = rng.uniform(0.2, 0.8, len(index))
    return pd.DataFrame(
        {"label": labels, "f1": f1, "f1_ci_low": f1 - 0.1, "f1_ci_high": f1 + 0.1, "f1_n": 20.0,
         "exact_match": f1 / 2, "exact_match_ci_low": f1 / 2 - 0.05, "exact_match_ci_high": f1 / 2 + 0.05,
         "latency_total_p95_s": rng.uniform(0.5, 4.0, len(index))},
        index=pd.Index(index, name="variant"),
    )


def test_short_labels_keep_what_differs_and_stay_unique():
    frame = twenty_four()
    short = short_labels(dict(zip(frame.index, frame["label"])))
    assert short["00abcdef0123"] == "recursive500/50 · dense@3 · SmolLM2-135M-Instruct-Q8_0"
    assert len(set(short.values())) == 24 and all("MiniLM" not in s and "concise" not in s for s in short.values())
    one = short_labels({"a": "x · y"})
    assert one == {"a": "x · y"}  # nothing to compare with: the whole label


# ---------------------------------------------------------------- metric bars


def test_metric_bars_info_is_one_row_per_variant_and_metric(frame):
    info = metric_bars_info(frame, ["f1", "exact_match"])
    assert isinstance(info, MetricBarsInfo) and info.metrics == ("f1", "exact_match")
    assert list(info.rows.columns) == ["variant", "label", "short", "metric", "mean", "ci_low", "ci_high", "n", "best"]
    assert len(info.rows) == 10 and info.variants == tuple(frame.index)
    row = info.rows[(info.rows["variant"] == "v4dddddddddd") & (info.rows["metric"] == "exact_match")].iloc[0]
    assert (row["label"], row["mean"], row["ci_low"], row["ci_high"], row["n"]) == ("fixed256 · dense@3", 0.30, 0.10, 0.50, 19)
    assert info.rows.loc[info.rows["best"], "variant"].tolist() == ["v5eeeeeeeeee", "v5eeeeeeeeee"]  # 0.9 f1, 0.7 EM
    assert info.ranges == {"f1": (0.0, 1.0), "exact_match": (0.0, 1.0)}  # from the catalogue's bounds


def test_plot_metric_bars_is_one_horizontal_panel_per_metric_with_ci_error_bars(frame):
    fig = plot_metric_bars(frame, ["f1", "exact_match"])
    assert len(fig.data) == 2 and [t.name for t in fig.data] == ["f1", "exact_match"]  # one trace per panel
    assert not any(t.showlegend for t in fig.data)  # no legend wall: each bar is a labelled row
    assert [a.text for a in fig.layout.annotations] == ["f1", "exact_match"]
    info = metric_bars_info(frame, ["f1", "exact_match"])
    for trace, metric in zip(fig.data, ["f1", "exact_match"]):
        rows = info.rows[info.rows["metric"] == metric]
        assert trace.orientation == "h" and list(trace.y) == list(rows["short"])
        assert list(trace.customdata) == list(frame.index)
        assert list(np.array(trace.x) + np.array(trace.error_x.array)) == pytest.approx(list(rows["ci_high"]))
        assert list(np.array(trace.x) - np.array(trace.error_x.arrayminus)) == pytest.approx(list(rows["ci_low"]))
    assert list(fig.layout.xaxis.range) == [0.0, 1.0] and list(fig.layout.xaxis2.range) == [0.0, 1.0]
    assert fig.layout.width is None and fig.layout.autosize
    assert fig.data[0].hovertext[3].startswith("<b>fixed256 · dense@3</b><br>variant v4dddddddddd<br>f1 0.5 [0.41, 0.6]<br>n=19")


def test_bars_stay_readable_at_24_variants():
    frame = twenty_four()
    fig = plot_metric_bars(frame, ["f1", "exact_match"])
    labels = list(fig.data[0].y)
    assert len(labels) == len(set(labels)) == 24  # every variant its own labelled row
    assert max(len(s) for s in labels) < 60
    assert fig.layout.height >= 24 * 20  # the chart grows with the variants instead of squeezing them
    assert list(fig.layout.yaxis.categoryarray) == labels


def test_default_bar_metrics_skip_those_the_frame_lacks(frame):
    fig = plot_metric_bars(frame)  # no hit_at_k in this frame
    assert [t.name for t in fig.data] == ["f1", "exact_match"]


def test_unknown_bar_metric_is_an_error_listing_the_choices(frame):
    with pytest.raises(StatsError, match=r"unknown metric\(s\) \['mrr'\].*f1, exact_match"):
        plot_metric_bars(frame, ["f1", "mrr"])
    with pytest.raises(StatsError, match="unknown metric"):
        metric_bars_info(frame, ["latency_total_p95_s"])  # no CI for it
    with pytest.raises(StatsError, match="none of the default metrics"):
        plot_metric_bars(frame[["label", "latency_total_p95_s"]])


# ---------------------------------------------------------------- question heatmap


def test_heatmap_info_orders_questions_by_disagreement():
    info = heatmap_info(questions(), "f1")
    assert isinstance(info, HeatmapInfo)
    m = info.matrix
    assert m.shape == (4, 3)  # questions down, variants across
    assert list(m.columns) == ["v1aaaaaaaaaa", "v2bbbbbbbbbb", "v3cccccccccc"]
    # spreads (population std): q2 [1,0,0] 0.471, q1 [0.5, failed, 0.5] 0, q0 [1,1,1] 0, q3 unscored -> last
    assert list(m.index) == ["q2", "q0", "q1", "q3"] and info.question_ids == ("q2", "q0", "q1", "q3")
    assert np.isnan(m.at["q1", "v2bbbbbbbbbb"])  # the failed cell is not a 0
    assert m.loc["q2"].tolist() == [1.0, 0.0, 0.0]
    assert m.loc["q3"].isna().all()
    assert info.question_labels[0] == "What is thing number 2?"  # question text, not ids
    assert info.z_range == (0.0, 1.0) and info.colorscale == "RdYlGn"
    assert info.cell_at(1, 0) == ("v2bbbbbbbbbb", "q2")


def test_heatmap_labels_every_row_and_fixes_the_colour_scale_at_24_variants():
    frame = twenty_four()
    rows = []
    for i, v in enumerate(frame.index):
        for q in range(30):
            rows.append({"variant": v, "question_id": f"5733be284776f4190066{q:04d}",
                         "question": f"In which year did the thing number {q} happen, according to the long article about it?",
                         "answer": "1990", "error": None, "f1": ((i + q) % 5) / 4})
    qs = pd.DataFrame(rows)
    fig = plot_question_heatmap(qs, "f1", labels=frame)
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)  # the same colours in every notebook
    ticks = fig.layout.yaxis.ticktext
    assert len(ticks) == len(fig.layout.yaxis.tickvals) == 30 == len(set(ticks))  # every row labelled, apart
    assert all(t.startswith("In which year") and "5733be" not in t and len(t) <= 70 for t in ticks)
    assert any(t.endswith("…") for t in ticks)  # shortened; the whole question is on hover
    assert "according to the long article about it?" in heat.text[0][0]
    short = short_labels(dict(zip(frame.index, frame["label"]))).values()
    assert list(fig.layout.xaxis.ticktext) == list(short)  # 24 columns: one line each, upright
    assert fig.layout.height >= 30 * 20 and fig.layout.width is None


def test_heatmap_colours_follow_the_metric_direction():
    from workbench.scoring.catalogue import Metric, registered

    qs = questions().assign(answer_words=[3.0, 5.0, 9.0, 1.0] * 3)
    with registered(Metric("answer_words", "answer", "words in the answer", better="lower", fn=lambda a, r: 0.0)):
        info = heatmap_info(qs, "answer_words")
    assert info.colorscale == "RdYlGn_r" and info.z_range is None  # unbounded: the data decides


def test_plot_question_heatmap_limits_questions_and_hovers_question_answer_and_score():
    fig = plot_question_heatmap(questions(), "f1", max_questions=2)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    heat = fig.data[0]
    assert isinstance(heat, go.Heatmap)
    assert np.asarray(heat.z).shape == (2, 3)
    assert list(fig.layout.yaxis.ticktext) == ["What is thing number 2?", "What is thing number 0?"]
    assert np.asarray(heat.z)[0].tolist() == [1.0, 0.0, 0.0]
    cell = heat.text[0][1]
    assert "What is thing number 2?" in cell and "answer: v2 says 2" in cell and "f1: 0" in cell
    assert "the 2 of 4 questions" in fig.layout.title.text
    failed = plot_question_heatmap(questions(), "f1").data[0]
    assert "answer: error: HTTP 500 from the model" in failed.text[2][1]
    assert "f1: n/a" in failed.text[2][1]


def test_heatmap_errors_name_the_metric_and_the_limit():
    with pytest.raises(StatsError, match=r"unknown metric 'rouge'.*f1"):
        heatmap_info(questions(), "rouge")
    with pytest.raises(StatsError, match="max_questions must be a positive integer, got 0"):
        plot_question_heatmap(questions(), "f1", max_questions=0)


def test_pareto_at_24_variants_labels_the_front_and_hovers_the_rest():
    frame = twenty_four()
    info = pareto_info(frame)
    front = info.points[info.points["on_front"]]
    assert (front["text"] == front["short"]).all() and (info.points.loc[~info.points["on_front"], "text"] == "").all()
    fig = plot_pareto(frame)
    assert "labels on the front only" in fig.layout.title.text
    assert all(v in " ".join(fig.data[0].hovertext) for v in info.points.loc[~info.points["on_front"], "label"])
    small = pareto_info(frame.iloc[:6])
    assert (small.points["text"] == small.points["short"]).all()  # few points: every one labelled


def test_heatmap_turns_column_labels_upright_when_there_are_many_variants():
    rows = [{"variant": v, "question_id": "q1", "question": "Who?", "answer": "x", "error": None, "f1": 0.5}
            for v in twenty_four().index]
    fig = plot_question_heatmap(pd.DataFrame(rows), "f1", labels=twenty_four())
    assert fig.layout.xaxis.tickangle == -90 and "<br>" not in fig.layout.xaxis.ticktext[0]
