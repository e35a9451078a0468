"""The judge against human labels: Cohen's κ and accuracy per judged metric, each with its 95 % CI.

Draws the table `SweepResults.judge_agreement()` returns (one row per metric); the hover says the
threshold chosen on the labels and the confusion counts. A dotted line marks κ = 0.4, below which the
Results view warns.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.scoring.agreement import LOW_KAPPA


def plot_agreement(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    rows = table[table["threshold"].notna()] if "threshold" in table.columns else table.iloc[0:0]
    metrics = [str(m) for m in rows.index]
    hover = [f"{m}: n {int(r.n)}, judge yes at score ≥ {r.threshold:.2f}<br>TP {r.tp} FP {r.fp} FN {r.fn} TN {r.tn}"
             for m, r in rows.iterrows()]
    for name, color in (("kappa", "#4c78a8"), ("accuracy", "#9ecae9")):
        if name not in rows.columns:
            continue
        mid = rows[name].astype(float)
        fig.add_bar(name="Cohen's κ" if name == "kappa" else "accuracy", y=metrics, x=mid, orientation="h",
                    marker_color=color, hovertext=hover, hoverinfo="text+x",
                    error_x=dict(type="data", symmetric=False, array=(rows[f"{name}_ci_high"] - mid).tolist(),
                                 arrayminus=(mid - rows[f"{name}_ci_low"]).tolist()))
    fig.add_vline(x=LOW_KAPPA, line_dash="dot", line_color="#a15c00")
    fig.update_layout(barmode="group", title="Judge vs human labels (95 % CI; dotted: κ = 0.4)",
                      xaxis=dict(range=[-1, 1], title="agreement"), height=140 + 60 * max(1, len(metrics)),
                      margin=dict(l=10, r=10, t=40, b=40))
    return fig
