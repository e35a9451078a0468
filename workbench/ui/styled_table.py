"""Tables a reader can scan: padded cells, headers that say which way is better, full labels, the best
value of each column marked. Rendered with pandas' Styler (the CSS travels inside the HTML).
"""

from __future__ import annotations

import html
import math

import pandas as pd

from workbench.analysis.leaderboard import Leaderboard

BEST_BG = "#d8f0de"
_TABLE_STYLES = [
    {"selector": "", "props": "border-collapse: collapse; font-size: 12.5px; margin: 4px 0 10px 0;"},
    {"selector": "th, td", "props": "padding: 5px 12px; border-bottom: 1px solid #e3e3e3; text-align: right;"},
    {"selector": "thead th", "props": "background: #f5f5f5; border-bottom: 2px solid #bbb; vertical-align: bottom;"
                                      " white-space: normal; min-width: 70px; font-weight: 600;"},
    # variant and label read left to right (as specific as the td rule above, and later, so it wins)
    {"selector": "td.col0, td.col1, th.col0, th.col1", "props": "text-align: left;"},
    {"selector": "tbody tr:hover", "props": "background: #f0f6ff;"},
]


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def leaderboard_html(board: Leaderboard) -> str:
    """The leaderboard as HTML: variant id, full label, one column per value; the sorted column's header
    is marked and every column's best value (in its direction) is bold on green (Styler puts the CSS in
    a scoped <style> block, which the HTML widget applies)."""
    frame = board.frame.copy()
    arrows = {c: ("↑" if board.directions[c] == "max" else "↓") for c in board.columns}
    headers = {c: f"{c} {arrows[c]}" + (" ▼" if c == board.sort_by else "") for c in board.columns}
    frame = frame.rename(columns=headers)
    frame.insert(0, "variant", [str(v) for v in frame.index])
    frame = frame.reset_index(drop=True)
    best = {headers[c]: set(v) for c, v in board.best.items()}

    def mark(column: pd.Series) -> list[str]:
        winners = best.get(column.name, set())
        return [f"background: {BEST_BG}; font-weight: 700;" if v in winners else "" for v in frame["variant"]]

    styler = (
        frame.style.hide(axis="index")
        .format({**{h: _number for h in headers.values()}, "label": html.escape, "variant": html.escape})
        .apply(mark, subset=list(headers.values()))
        .set_table_styles(_TABLE_STYLES)
        .set_properties(subset=["label"], **{"text-align": "left", "white-space": "normal", "min-width": "340px"})
        .set_properties(subset=["variant"], **{"text-align": "left", "font-family": "var(--jp-code-font-family, monospace)"})
    )
    legend = ('<div style="color:#555;font-size:12px">↑ higher is better, ↓ lower is better · '
              f'<span style="background:{BEST_BG};font-weight:700;padding:0 4px">bold on green</span>: best in the column · '
              f'sorted by {html.escape(board.sort_by)}, best first</div>')
    return legend + styler.to_html()
