"""Quality vs latency (or cost) per variant, the Pareto front stepped through it, every point labelled.

`pareto_info` computes the points (pure pandas); `plot_pareto` draws them. Each marker carries its
variant id as `customdata`, so a click can open that variant.

>>> frame = pd.DataFrame({"label": ["small", "big"], "f1": [0.4, 0.6], "latency_total_p95_s": [1.0, 3.0]},
...                      index=pd.Index(["aaa", "bbb"], name="variant"))
>>> pareto_info(frame).points["on_front"].tolist()
[True, True]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from workbench.analysis.plots.labels import axis_title, check_column, fmt, full_labels, metric_range, short_labels
from workbench.analysis.stats import StatsError, pareto_front
from workbench.scoring.aggregate import direction


LABEL_ALL_UP_TO = 10  # more points than this: only the front is labelled on the chart (every point on hover)


class ParetoInfo(NamedTuple):
    """What `plot_pareto` draws.

    `points`: one row per variant that has both values (variant, label, short, quality, x, on_front,
    ci_low, ci_high, n, cost_usd_per_1k, tokens_prompt_mean, hover, text: the label drawn next to the
    point: every short label up to LABEL_ALL_UP_TO points, else the front's only); `front`: the front as (x, quality)
    pairs sorted by x; `missing`: variants left out for lack of a value; `y_range`: the metric's fixed
    range from the catalogue (None: from the data).
    """

    quality: str
    x: str
    points: pd.DataFrame
    front: list[tuple[float, float]]
    x_goal: str = "min"
    missing: tuple[str, ...] = ()
    y_range: tuple[float, float] | None = None


def _hover(row: pd.Series, quality: str, x: str) -> str:
    lines = [f"<b>{row['label']}</b>", f"variant {row['variant']}"]
    ci = "" if math.isnan(row["ci_low"]) else f" [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"
    n = "" if math.isnan(row["n"]) else f" (n={int(row['n'])})"
    lines.append(f"{axis_title(quality)} {fmt(row['quality'])}{ci}{n}")
    lines.append(f"{axis_title(x)}: {fmt(row['x'])}")
    if x != "cost_usd_per_1k":
        lines.append(f"cost per 1k questions: ${fmt(row['cost_usd_per_1k'])}")
    lines.append(f"prompt tokens per question: {fmt(row['tokens_prompt_mean'])}")
    lines.append("click: open this variant below")
    return "<br>".join(lines)


def pareto_info(frame: pd.DataFrame, quality: str = "f1", x: str = "latency_total_p95_s",
                x_goal: str | None = None) -> ParetoInfo:
    """The points and front of a quality-vs-`x` Pareto plot (`x` in its declared direction unless `x_goal`
    says "min" or "max": lower latency and cost, a higher cache hit rate).

    The front is `stats.pareto_front(frame, {quality: direction(quality), x: x_goal})`: quality in its
    declared direction (higher f1, lower answer length).

    >>> f = pd.DataFrame({"f1": [0.5, 0.4, 0.6], "cost_usd_per_1k": [0.0, 0.0, 1.0]}, index=["a", "b", "c"])
    >>> info = pareto_info(f, x="cost_usd_per_1k")
    >>> info.points.loc[info.points["on_front"], "variant"].tolist(), info.front
    (['a', 'c'], [(0.0, 0.5), (1.0, 0.6)])
    """
    x_goal = direction(x) if x_goal is None else x_goal
    if x_goal not in ("min", "max"):
        raise StatsError(f"x_goal={x_goal!r}; use 'min' (lower {x} is better) or 'max'")
    check_column(frame, quality, "quality")
    check_column(frame, x, "x")
    on_front = set(pareto_front(frame, {quality: direction(quality), x: x_goal}))
    labels = full_labels(frame)
    short = short_labels(labels)

    def col(name: str) -> pd.Series:
        return frame[name].astype(float) if name in frame.columns else pd.Series(float("nan"), index=frame.index)

    points = pd.DataFrame(
        {
            "variant": [str(v) for v in frame.index],
            "label": [labels[str(v)] for v in frame.index],
            "short": [short[str(v)] for v in frame.index],
            "quality": col(quality).to_numpy(),
            "x": col(x).to_numpy(),
            "on_front": [v in on_front for v in frame.index],
            "ci_low": col(f"{quality}_ci_low").to_numpy(),
            "ci_high": col(f"{quality}_ci_high").to_numpy(),
            "n": col(f"{quality}_n").to_numpy(),
            "cost_usd_per_1k": col("cost_usd_per_1k").to_numpy(),
            "tokens_prompt_mean": col("tokens_prompt_mean").to_numpy(),
        }
    )
    shown = points["quality"].notna() & points["x"].notna()
    missing = tuple(points.loc[~shown, "variant"])
    points = points[shown].reset_index(drop=True)
    points["hover"] = [_hover(row, quality, x) for _, row in points.iterrows()]
    crowded = len(points) > LABEL_ALL_UP_TO
    points["text"] = [s if (f or not crowded) else "" for s, f in zip(points["short"], points["on_front"])]
    front_points = points[points["on_front"]].sort_values(["x", "quality"], kind="stable")
    front = [(float(a), float(b)) for a, b in zip(front_points["x"], front_points["quality"])]
    return ParetoInfo(quality, x, points, front, x_goal, missing, metric_range(quality))


def _make_pareto_trace(points: pd.DataFrame, name: str, color: str, size: int) -> go.Scatter:
    return go.Scatter(
        x=points["x"],
        y=points["quality"],
        mode="markers+text",
        name=name,
        marker={"color": color, "size": size},
        text=points["text"],
        # neighbours along x alternate above and below, so close points' labels do not print over each other
        textposition=["top center" if i % 2 == 0 else "bottom center" for i in points["x"].rank(method="first").astype(int)],
        textfont={"size": 11, "color": color},
        customdata=points["variant"],
        error_y={"type": "data", "symmetric": False, "array": points["ci_high"] - points["quality"],
                 "arrayminus": points["quality"] - points["ci_low"], "thickness": 1, "color": color},
        hovertext=points["hover"],
        hovertemplate="%{hovertext}<extra></extra>",
        cliponaxis=False,
    )


def _make_front_line(info: ParetoInfo) -> go.Scatter:
    return go.Scatter(
        x=[p[0] for p in info.front],
        y=[p[1] for p in info.front],
        mode="lines",
        name="Pareto front",
        line={"color": "#d62728", "shape": "hv" if info.x_goal == "min" else "vh", "width": 2},
        hoverinfo="skip",
    )


def _make_pareto_figure(info: ParetoInfo) -> go.Figure:
    dominated = info.points[~info.points["on_front"]]
    front = info.points[info.points["on_front"]]
    fig = go.Figure(
        [
            _make_pareto_trace(dominated, "dominated", "#757575", 9),
            _make_pareto_trace(front, "on the front", "#d62728", 12),
            _make_front_line(info),
        ]
    )
    better = "lower" if info.x_goal == "min" else "higher"
    up = "up" if direction(info.quality) == "max" else "down"
    title = f"{axis_title(info.quality)} vs {axis_title(info.x)} ({up} and {'left' if info.x_goal == 'min' else 'right'} is better)"
    if (info.points["text"] == "").any():
        title += "<br><sup>labels on the front only; hover any point for its variant</sup>"
    if info.missing:
        title += f"<br><sup>not shown, no value: {', '.join(info.missing)}</sup>"
    yaxis: dict = {"title": axis_title(info.quality)}
    if info.y_range is not None:  # the metric's whole range: the same picture in every notebook
        low, high = info.y_range
        yaxis["range"] = [low - 0.04 * (high - low), high + 0.08 * (high - low)]
    fig.update_layout(
        title=title,
        xaxis_title=f"{axis_title(info.x)}, {better} is better",
        yaxis=yaxis,
        hovermode="closest",
        template="plotly_white",
        autosize=True,
        height=480,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
    )
    return fig


def plot_pareto(frame: pd.DataFrame, quality: str = "f1", x: str = "latency_total_p95_s",
                x_goal: str | None = None) -> go.Figure:
    """Quality vs latency (or cost) per variant with the Pareto front highlighted and stepped.

    Three traces: dominated variants, front variants (both labelled with their short label, with CI
    error bars and hover: label, quality with CI and n, x, cost, prompt tokens) and the front's step line.

    >>> f = pd.DataFrame({"label": ["a", "b"], "f1": [0.5, 0.6], "cost_usd_per_1k": [0.0, 0.0]}, index=["a", "b"])
    >>> len(plot_pareto(f, x="cost_usd_per_1k").data)
    3
    """
    return _make_pareto_figure(pareto_info(frame, quality, x, x_goal))
