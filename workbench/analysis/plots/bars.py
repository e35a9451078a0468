"""Mean per variant with its bootstrap 95 % CI: one small panel per metric, one horizontal bar per variant.

Panels (facets) instead of one grouped chart with a legend: each variant is a labelled row, the same
row in every panel, so 24 variants stay readable. `metric_bars_info` computes the numbers (pure pandas);
`plot_metric_bars` draws them. Every bar carries its variant id as `customdata` for clicks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analysis.plots.labels import axis_title, fmt, full_labels, metric_range, short_labels
from workbench.analysis.stats import StatsError
from workbench.scoring.aggregate import direction

DEFAULT_BAR_METRICS = ("f1", "exact_match", "hit_at_k")
PANELS_PER_ROW = 4
ROW_PX = 24  # height of one variant's bar
BAR = "#4c78a8"
BEST = "#1b7f3b"


class MetricBarsInfo(NamedTuple):
    """What `plot_metric_bars` draws. `rows`: one per (metric, variant): variant, label, short, metric,
    mean, ci_low, ci_high, n, best (the best mean of that metric in its direction); `variants`: the row
    order of every panel; `ranges`: each metric's fixed range from the catalogue, or None."""

    metrics: tuple[str, ...]
    variants: tuple[str, ...]
    rows: pd.DataFrame
    ranges: dict[str, tuple[float, float] | None]


def _available_bar_metrics(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if f"{c}_ci_low" in frame.columns and f"{c}_ci_high" in frame.columns]


def default_metrics(frame: pd.DataFrame) -> list[str]:
    metrics = [m for m in DEFAULT_BAR_METRICS if m in _available_bar_metrics(frame)]
    if not metrics:
        raise StatsError(
            f"the frame has none of the default metrics {list(DEFAULT_BAR_METRICS)}; pass metrics= from: "
            f"{', '.join(_available_bar_metrics(frame)) or 'nothing'}"
        )
    return metrics


def metric_bars_info(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> MetricBarsInfo:
    """One row per (metric, variant); a metric needs its aggregate and CI columns (`f1`, `f1_ci_low`,
    `f1_ci_high`; `f1_n` optional). `metrics=None`: whichever of f1, exact_match and hit_at_k the frame has.

    >>> f = pd.DataFrame({"label": ["x"], "f1": [0.5], "f1_ci_low": [0.4], "f1_ci_high": [0.6], "f1_n": [20.0]},
    ...                  index=pd.Index(["aaa"], name="variant"))
    >>> metric_bars_info(f, ["f1"]).rows.drop(columns="best").to_dict("records")
    [{'variant': 'aaa', 'label': 'x', 'short': 'x', 'metric': 'f1', 'mean': 0.5, 'ci_low': 0.4, 'ci_high': 0.6, 'n': 20}]
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    if metrics is None:
        metrics = default_metrics(frame)
    if not metrics:
        raise StatsError(f"metrics is empty; choose from: {', '.join(_available_bar_metrics(frame))}")
    available = _available_bar_metrics(frame)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise StatsError(f"unknown metric(s) {unknown} for metrics=; the frame has CIs for: {', '.join(available) or 'nothing'}")
    labels = full_labels(frame)
    short = short_labels(labels)
    records = []
    for metric in metrics:
        for v in frame.index:
            n = frame.at[v, f"{metric}_n"] if f"{metric}_n" in frame.columns else float("nan")
            records.append(
                {"variant": str(v), "label": labels[str(v)], "short": short[str(v)], "metric": metric,
                 "mean": float(frame.at[v, metric]), "ci_low": float(frame.at[v, f"{metric}_ci_low"]),
                 "ci_high": float(frame.at[v, f"{metric}_ci_high"]), "n": pd.NA if pd.isna(n) else int(n)}
            )
    rows = pd.DataFrame.from_records(records, columns=["variant", "label", "short", "metric", "mean", "ci_low", "ci_high", "n"])
    rows["n"] = rows["n"].astype("Int64")
    best = rows.groupby("metric", sort=False)["mean"].transform(lambda s: s.max() if direction(s.name) == "max" else s.min())
    rows["best"] = rows["mean"].notna() & (rows["mean"] == best)
    return MetricBarsInfo(tuple(metrics), tuple(str(v) for v in frame.index), rows,
                          {m: metric_range(m) for m in metrics})


def _bar_hover(row: pd.Series) -> str:
    n = "n/a" if pd.isna(row["n"]) else int(row["n"])
    ci = f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    return (f"<b>{row['label']}</b><br>variant {row['variant']}<br>{row['metric']} {fmt(row['mean'])} {ci}<br>n={n}"
            "<br>click: open this variant below")


def _make_bar_trace(rows: pd.DataFrame) -> go.Bar:
    return go.Bar(
        y=rows["short"],
        x=rows["mean"],
        orientation="h",
        name=str(rows["metric"].iloc[0]),
        marker={"color": [BEST if b else BAR for b in rows["best"]]},
        error_x={"type": "data", "symmetric": False, "color": "#333", "thickness": 1.2,
                 "array": rows["ci_high"] - rows["mean"], "arrayminus": rows["mean"] - rows["ci_low"]},
        customdata=rows["variant"],
        hovertext=[_bar_hover(r) for _, r in rows.iterrows()],
        hovertemplate="%{hovertext}<extra></extra>",
        showlegend=False,
    )


def _make_bars_figure(info: MetricBarsInfo) -> go.Figure:
    cols = min(len(info.metrics), PANELS_PER_ROW)
    n_rows = math.ceil(len(info.metrics) / cols)
    fig = make_subplots(rows=n_rows, cols=cols, shared_yaxes=True, subplot_titles=[axis_title(m) for m in info.metrics],
                        horizontal_spacing=0.03, vertical_spacing=min(0.12, 0.5 / n_rows))
    for i, metric in enumerate(info.metrics):
        row, col = divmod(i, cols)
        fig.add_trace(_make_bar_trace(info.rows[info.rows["metric"] == metric]), row=row + 1, col=col + 1)
        better = "higher" if direction(metric) == "max" else "lower"
        xaxis: dict = {"title_text": f"{better} is better", "title_font_size": 11}
        if info.ranges[metric] is not None:  # the metric's whole range, whatever this sweep scored
            xaxis["range"] = list(info.ranges[metric])
        fig.update_xaxes(row=row + 1, col=col + 1, **xaxis)
    short = dict(zip(info.rows["variant"], info.rows["short"]))
    fig.update_yaxes(autorange="reversed", automargin=True, categoryorder="array",
                     categoryarray=[short[v] for v in info.variants])  # first variant on top, in every panel
    fig.update_layout(
        title="Mean per variant with bootstrap 95 % CI (green: best in the metric's direction)",
        template="plotly_white",
        autosize=True,
        height=90 + n_rows * (60 + ROW_PX * len(info.variants)),
        bargap=0.25,
        margin={"l": 10, "r": 20, "t": 80, "b": 40},
    )
    return fig


def plot_metric_bars(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> go.Figure:
    """One panel per metric, one horizontal bar per variant (short label), asymmetric 95 % CI error bars,
    the x axis fixed to the metric's range when it has one. `metrics=None`: whichever of f1, exact_match
    and hit_at_k the frame has.

    >>> f = pd.DataFrame({"label": ["x", "y"], "f1": [0.5, 0.7], "f1_ci_low": [0.4, 0.6], "f1_ci_high": [0.6, 0.8]},
    ...                  index=["aaa", "bbb"])
    >>> len(plot_metric_bars(f).data)
    1
    """
    return _make_bars_figure(metric_bars_info(frame, metrics))
