"""What every figure shares: number formats, axis titles, short variant labels, a metric's fixed range.

Short labels keep only what tells variants apart: "recursive500/50 · all-MiniLM-L6-v2 · dense@3 · concise ·
SmolLM2" for four variants that differ in chunking and retrieval becomes "recursive500/50 · dense@3".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from workbench.analysis.stats import StatsError
from workbench.scoring import catalogue
from workbench.scoring.aggregate import direction

SEP = " · "  # VariantConfig.label() joins its parts with this
_AXIS_TITLES = {
    "latency_total_p95_s": "total latency p95 (s)",
    "latency_total_p50_s": "total latency p50 (s)",
    "latency_total_mean_s": "mean total latency (s)",
    "latency_retrieve_p95_s": "retrieval latency p95 (s)",
    "latency_generate_p95_s": "generation latency p95 (s)",
    "cost_usd": "cost of the run (USD)",
    "tokens_prompt_mean": "prompt tokens per question",
}
GOOD_TO_BAD = "RdYlGn"  # red (bad) to green (good); reversed for lower-is-better metrics


def axis_title(column: str) -> str:
    """A readable axis title for a frame column: the catalogue's label of a declared aggregate (routing,
    caching, cost per 1k), a measurement's title below, else the column itself (a metric's name).

    >>> axis_title("latency_total_p95_s"), axis_title("escalation_rate"), axis_title("routed_share.small")
    ('total latency p95 (s)', 'escalation rate', 'share answered by small')
    """
    return _AXIS_TITLES.get(column) or catalogue.label(column) or column


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return "n/a"
    if isinstance(x, (int, float)) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{float(x):.{digits}g}"


def shorten(text: Any, limit: int = 90) -> str:
    """One line, at most `limit` characters, cut at a word boundary when there is one.

    >>> shorten("Which NFL team represented the AFC at Super Bowl 50?", 30)
    'Which NFL team represented…'
    """
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def check_column(frame: pd.DataFrame, column: str, argument: str) -> None:
    if column not in frame.columns or column not in numeric_columns(frame):
        raise StatsError(f"{argument}={column!r} is not a numeric column of the frame; choose one of: {', '.join(numeric_columns(frame))}")


def full_labels(frame: pd.DataFrame) -> dict[str, str]:
    """Variant -> its full label (the variant id when the frame has no `label` column)."""
    if "label" in frame.columns:
        return {str(v): str(label) for v, label in zip(frame.index, frame["label"])}
    return {str(v): str(v) for v in frame.index}


def short_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Variant -> the parts of its label that differ between variants; the variant id is added where
    two short labels would be the same, so every variant has its own.

    >>> short_labels({"a1": "rec500 · MiniLM · dense@3 · concise", "b2": "rec500 · MiniLM · bm25@3 · concise"})
    {'a1': 'dense@3', 'b2': 'bm25@3'}
    >>> short_labels({"a1": "x · y", "b2": "x · y"})
    {'a1': 'x · y [a1]', 'b2': 'x · y [b2]'}
    """
    parts = {v: str(label).split(SEP) for v, label in labels.items()}
    width = max((len(p) for p in parts.values()), default=0)
    keep = [i for i in range(width) if len({tuple(p[i:i + 1]) for p in parts.values()}) > 1]
    short = {v: SEP.join(p[i] for i in keep if i < len(p)) or SEP.join(p) for v, p in parts.items()}
    seen = pd.Series(list(short.values()))
    repeated = set(seen[seen.duplicated(keep=False)])
    return {v: f"{s} [{v}]" if s in repeated else s for v, s in short.items()}


def variant_labels(variants: list[str], labels: Mapping[str, str] | pd.DataFrame | None) -> dict[str, str]:
    """Full labels for `variants` from a mapping or a `to_frame()` frame (missing ones: the variant id)."""
    if isinstance(labels, pd.DataFrame):
        labels = full_labels(labels)
    labels = labels or {}
    return {v: str(labels.get(v, v)) for v in variants}


def metric_range(metric: str) -> tuple[float, float] | None:
    """The fixed range the catalogue declares for `metric` (None: let the data decide)."""
    return catalogue.bounds(metric)


def colorscale_for(metric: str) -> str:
    """Red for bad, green for good, in the metric's declared direction."""
    return GOOD_TO_BAD if direction(metric) == "max" else GOOD_TO_BAD + "_r"
