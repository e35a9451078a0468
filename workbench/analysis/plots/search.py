"""The search at a glance: one row per variant tried, one column per rung (its question count); a line
from the first rung to the last rung the variant answered, ending in a marker that says how it ended
(won, tied, survived, stopped as significantly worse, stopped by rank, broke a constraint, pruned).

`search_info` computes the rows from `results.search` (pure); `plot_search` draws them. Each marker
carries its variant id as `customdata` and the reason it stopped in its hover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from workbench.analysis.plots.labels import short_labels
from workbench.analysis.stats import StatsError

ROW_PX = 22
OUTCOMES = {  # outcome -> (colour, marker)
    "winner": ("#1b7f3b", "star"),
    "tied": ("#4c9f38", "diamond"),
    "survived": ("#4c78a8", "circle"),
    "significantly worse": ("#c0392b", "x"),
    "outside the top": ("#e67e22", "x"),
    "constraint": ("#8e44ad", "x"),
    "pruned": ("#e67e22", "x"),
    "stopped": ("#7f7f7f", "x"),
}


class SearchInfo(NamedTuple):
    """rows: variant, label, short, rung, questions, outcome, reason; rungs: question count per rung."""

    rows: pd.DataFrame
    rungs: tuple[int, ...]
    strategy: str


def _outcome(variant: str, state: Mapping[str, Any], search: Mapping[str, Any]) -> str:
    why = state.get("stopped")
    if not why:
        if variant == search.get("winner"):
            return "winner"
        return "tied" if variant in (search.get("tied") or ()) else "survived"
    for key in ("significantly worse", "outside the top", "pruned"):
        if key in why:
            return key
    return "constraint" if ("breaks" in why or "unknown" in why) else "stopped"


def search_info(search: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> SearchInfo:
    """The rows of a halving or optuna search (`results.search`); labels: variant hash -> label."""
    states = search.get("variants") or {}
    if not states:
        raise StatsError("no search to draw: this sweep walked the grid (search.strategy: grid) or has not started")
    labels = dict(labels or {})
    full = {h: labels.get(h, h[:12]) for h in states}
    short = short_labels({h[:12]: label for h, label in full.items()})
    sizes = tuple(search.get("rung_sizes") or sorted({s["questions"] for s in states.values()}))
    records = [{"variant": h, "label": full[h], "short": short[h[:12]],
                "rung": int(s["rung"]), "questions": int(s["questions"]), "outcome": _outcome(h, s, search),
                "reason": s.get("stopped") or "answered every question"} for h, s in states.items()]
    rows = pd.DataFrame(records).sort_values(["rung", "questions", "outcome"], ascending=[False, False, True], kind="stable")
    return SearchInfo(rows.reset_index(drop=True), sizes, str(search.get("strategy", "")))


def plot_search(info: SearchInfo) -> go.Figure:
    fig = go.Figure()
    y = list(info.rows["short"])
    for row in info.rows.itertuples():
        fig.add_trace(go.Scatter(x=[0, row.rung], y=[row.short, row.short], mode="lines", showlegend=False,
                                 line={"color": "#c8c8c8", "width": 2}, hoverinfo="skip"))
    for outcome, (colour, symbol) in OUTCOMES.items():
        part = info.rows[info.rows["outcome"] == outcome]
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part["rung"], y=part["short"], mode="markers", name=outcome,
            marker={"color": colour, "symbol": symbol, "size": 11, "line": {"width": 0}},
            customdata=part["variant"],
            hovertext=[f"{r.label}<br>{r.questions} questions (rung {r.rung})<br>{r.reason}" for r in part.itertuples()],
            hoverinfo="text"))
    ticks = list(range(len(info.rungs)))
    fig.update_layout(
        title=f"{info.strategy} search: where each variant stopped", height=120 + ROW_PX * len(y),
        xaxis={"title": "rung (questions answered)", "tickvals": ticks,
               "ticktext": [f"{i}: {n}" for i, n in zip(ticks, info.rungs)], "range": [-0.3, max(ticks or [0]) + 0.3]},
        yaxis={"categoryorder": "array", "categoryarray": y[::-1], "automargin": True},
        margin={"l": 10, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.15},
    )
    return fig
