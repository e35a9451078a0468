"""The per-variant table a reader sorts and scans: chosen columns, sorted best first, best per column marked.

"Best" follows each column's direction (`scoring.aggregate.direction`: higher f1, lower latency and
cost). Pure data; `workbench.ui.styled_table` renders it.

>>> f = pd.DataFrame({"label": ["a", "b"], "f1": [0.4, 0.6], "latency_total_p95_s": [1.0, 3.0]},
...                  index=pd.Index(["v1", "v2"], name="variant"))
>>> board = leaderboard(f, sort_by="latency_total_p95_s")
>>> board.frame.index.tolist(), board.best
(['v1', 'v2'], {'f1': ('v2',), 'latency_total_p95_s': ('v1',)})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from workbench.analysis.stats import StatsError
from workbench.scoring.aggregate import direction
from workbench.scoring.catalogue import quality_metrics

MEASURE_COLUMNS = ("latency_total_p50_s", "latency_total_p95_s", "tokens_prompt_mean", "cost_usd_per_1k", "failed_cells")


@dataclass(frozen=True)
class Leaderboard:
    frame: pd.DataFrame  # index variant; `label` first, then the value columns, rows sorted
    columns: tuple[str, ...]  # the value columns
    directions: dict[str, str]  # column -> "max" | "min"
    best: dict[str, tuple[str, ...]]  # column -> the variants holding its best value (ties: all)
    sort_by: str


def default_columns(frame: pd.DataFrame) -> list[str]:
    """The quality metrics the frame has values for (catalogue order), then latency, tokens, cost, failures."""
    quality = [m for m in quality_metrics([dict.fromkeys(frame.columns)]) if m in frame.columns and frame[m].notna().any()]
    return quality + [c for c in MEASURE_COLUMNS if c in frame.columns and frame[c].notna().any()]


def leaderboard(frame: pd.DataFrame, columns: Sequence[str] | None = None, sort_by: str | None = None) -> Leaderboard:
    """`frame` (`results.to_frame()`) cut to `columns` and sorted by `sort_by` (default: the first column),
    best first in its direction."""
    columns = list(columns) if columns is not None else default_columns(frame)
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise StatsError(f"unknown column(s) {unknown} for the table; the frame has: {', '.join(map(str, frame.columns))}")
    if not columns:
        raise StatsError("the table has no columns to show: the frame has no metric with a value")
    sort_by = sort_by or columns[0]
    if sort_by not in columns:
        raise StatsError(f"sort_by={sort_by!r} is not a column of the table; choose one of: {', '.join(columns)}")
    directions = {c: direction(c) for c in columns}
    shown = frame[(["label"] if "label" in frame.columns else []) + columns]
    shown = shown.sort_values(sort_by, ascending=directions[sort_by] == "min", na_position="last", kind="stable")
    best = {}
    for c in columns:
        values = pd.to_numeric(shown[c], errors="coerce")
        if values.notna().any():
            top = values.max() if directions[c] == "max" else values.min()
            best[c] = tuple(str(v) for v in values.index[values == top])
    return Leaderboard(shown, tuple(columns), directions, best, sort_by)


__all__ = ["Leaderboard", "default_columns", "leaderboard"]
