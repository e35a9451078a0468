"""Rows as a fixed-width text table, for a terminal: what the CLI prints after a sweep, without pandas (whose
import, ~0.4 s of CPU, is the only reason a command-line sweep would load it)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

WIDEST_TEXT = 60  # longer labels end in "…", as pandas' display.max_colwidth did


def text_table(records: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """One line per record under a header of its keys: numbers right-aligned to `digits` decimals (a column of
    whole numbers, such as a count, without decimals), text left-aligned, a missing value as "-"."""
    if not records:
        return "(no variants)"
    columns = list(records[0])
    numeric = [all(_is_number(r.get(c)) or r.get(c) is None for r in records) for c in columns]
    whole = [n and all(float(r[c]).is_integer() for r in records if _is_number(r.get(c))) for c, n in zip(columns, numeric)]
    grid = [[_cell(r.get(c), 0 if w else digits) for c, w in zip(columns, whole)] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in grid)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), *(line(row) for row in grid)])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if _is_number(value):
        return f"{value:.{digits}f}"
    text = str(value)
    return text if len(text) <= WIDEST_TEXT else text[: WIDEST_TEXT - 1] + "…"


__all__ = ["text_table"]
