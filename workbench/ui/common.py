"""Small helpers the tabs share: messages, field metadata, input parsing, tables (figure slots: figure_view.py).

Nothing here decides anything about RAG: it turns text typed into widgets into values for the
configs, and data from the Python API into HTML.
"""

from __future__ import annotations

import html
import math
import re
import typing
from typing import Any

import ipywidgets as W
import pandas as pd
from pydantic import BaseModel

from workbench.errors import ConfigError

_COLORS = {"error": "#b00020", "ok": "#1b7f3b", "info": "#555", "warn": "#a15c00"}


def message(text: str | None, kind: str = "info") -> str:
    """HTML for a one-block message (red for errors); empty text gives an empty string."""
    if not text:
        return ""
    return (
        f'<div class="wb-msg wb-{kind}" style="color:{_COLORS[kind]};white-space:pre-wrap;'
        f'font-family:var(--jp-code-font-family,monospace);font-size:12px">{html.escape(text)}</div>'
    )


# The CLI's flags, as the widgets name the same control: a message from the layers below may tell the
# user to pass a flag; shown in the Workbench it names the control that exists here instead.
WIDGET_CONTROLS = {
    "--no-resume": "Resume unticked (Run tab)",
    "--no-cache": "No cache ticked (Run tab)",
    "--tracking-uri": "the Run tab's tracking URI",
    "--limit": "the Data tab's limit",
    "--remeasure-latency N": "re-time N questions (Run tab)",
    "--remeasure-latency": "re-time N questions (Run tab)",
}
_FLAG = re.compile("|".join(re.escape(flag) + r"(?![\w-])" for flag in WIDGET_CONTROLS))


def widget_wording(text: str) -> str:
    """`text` with each CLI flag replaced by the widget control that does the same."""
    return _FLAG.sub(lambda m: WIDGET_CONTROLS[m.group(0)], text)


def literal_options(model: type[BaseModel], name: str) -> list[str]:
    """The allowed values of a `Literal[...]` field, in declaration order (`recursive`, `token`, `none`)."""
    annotation = model.model_fields[name].annotation
    return [str(a) for a in typing.get_args(annotation)]


def field_help(model: type[BaseModel], name: str) -> str:
    """A field's description plus its bounds, for tooltips: the labels come from the configs themselves."""
    info = model.model_fields[name]
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    text = info.description or name
    return f"{text} ({', '.join(bounds)})" if bounds else text


def parse_ints(text: str, field: str) -> list[int]:
    """'300, 500' -> [300, 500]; anything else is a ConfigError naming `field`."""
    parts = [p.strip() for p in re.split(r"[,\s]+", text.strip()) if p.strip()]
    if not parts:
        raise ConfigError(f"{field}: empty; write one or more whole numbers separated by commas, e.g. 300, 500")
    out: list[int] = []
    for part in parts:
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"{field}: {part!r} is not a whole number; write e.g. 300, 500") from None
    return list(dict.fromkeys(out))  # a repeated value is one grid point


def parse_constraints(text: str) -> dict[str, str]:
    """The same parser the CLI uses; a bad entry becomes a ConfigError the tab shows."""
    from workbench.analysis.stats import StatsError, parse_constraints as parse

    try:
        return parse(text)
    except StatsError as exc:
        raise ConfigError(str(exc)) from None


def set_options(dropdown: W.Dropdown, options: list, value: Any = None) -> None:
    """New options with `value` (default: the first) selected. Not inside hold_trait_notifications:
    ipywidgets 8 validates the value against the old options there."""
    dropdown.options = options
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    dropdown.value = value if value in values else (values[0] if values else None)


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table_html(frame: pd.DataFrame, max_rows: int = 50) -> str:
    """A compact, escaped HTML table (pandas' to_html, numbers shortened)."""
    if frame.empty:
        return '<div style="color:#555">(no rows)</div>'
    shown = frame.head(max_rows).copy()
    for col in shown.columns:
        shown[col] = [fmt(v) if isinstance(v, float) else v for v in shown[col]]
    return shown.to_html(escape=True, index=False, border=0, classes="wb-table", na_rep="–")


def shorten(text: Any, limit: int = 160) -> str:
    text = "" if text is None else " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
