"""Where a metric's spread comes from, per variant: the question, generation and judge variances stacked.

Shown when a sweep has repeats (`repeats:` in the spec): `variance_info` reads the variant frame's
`<metric>_var_question/_var_generation/_var_judge` (`scoring.variance`, NaN when a level had one draw)
and `plot_variance_split` draws one stacked horizontal bar per variant. A long generation or judge
segment says more answers or judge passes narrow the CI; a long question segment says more questions do.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from workbench.analysis.plots.labels import full_labels, short_labels
from workbench.analysis.stats import StatsError

PARTS = (("var_question", "question", "#4c78a8"), ("var_generation", "generation", "#f58518"), ("var_judge", "judge", "#54a24b"))
ROW_PX = 26


class VarianceInfo(NamedTuple):
    """`table`: one row per variant (index), columns question, generation, judge (variances, NaN: not
    separable) and each one's share of their sum."""

    metric: str
    table: pd.DataFrame


def variance_info(frame: pd.DataFrame, metric: str = "f1") -> VarianceInfo:
    cols = [f"{metric}_{part}" for part, _, _ in PARTS]
    present = [c for c in cols if c in frame.columns]
    if not present:
        raise StatsError(f"no variance split of {metric!r}: the sweep has no repeats (add `repeats: {{generation: 3}}` "
                         "to the spec) or the metric has no scores")
    table = pd.DataFrame({name: frame[c] if c in frame.columns else float("nan")
                          for (part, name, _), c in zip(PARTS, cols)}, index=frame.index)
    total = table.sum(axis=1, min_count=1)
    for _, name, _ in PARTS:
        table[f"{name}_share"] = table[name] / total
    if "label" in frame.columns:
        table.insert(0, "label", frame["label"])
    return VarianceInfo(metric, table)


def plot_variance_split(info: VarianceInfo) -> go.Figure:
    table = info.table
    full = full_labels(table)
    short = short_labels(full)
    y = [short[v] for v in table.index]
    fig = go.Figure()
    for _, name, colour in PARTS:
        fig.add_bar(y=y, x=table[name].fillna(0.0), name=name, orientation="h", marker_color=colour,
                    customdata=list(table.index),
                    hovertext=[f"{full[v]}<br>{name} variance {table.at[v, name]:.4g}" for v in table.index],
                    hoverinfo="text")
    fig.update_layout(barmode="stack", title=f"{info.metric}: variance by source", height=120 + ROW_PX * len(y),
                      margin=dict(l=10, r=10, t=40, b=30), legend=dict(orientation="h"), xaxis_title="variance")
    fig.update_yaxes(autorange="reversed")
    return fig


__all__ = ["VarianceInfo", "plot_variance_split", "variance_info"]
