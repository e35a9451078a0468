"""A deployment at a glance (`workbench.monitor(...)`): six small panels from its traces.

Requests per time bucket; p50/p95 latency; error rate; tokens and cost per 1,000 requests; the retrieval top
score in production against the sweep's (drift); the share of negative feedback. `monitor_info` computes the
per-bucket numbers (pure pandas), `plot_monitor` draws them.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PANELS = ("requests per bucket", "latency p50 / p95 (ms)", "error rate", "tokens and cost per 1k requests",
          "retrieval top score: production vs sweep", "negative feedback share")
PROD, SWEEP, BAD = "#4c78a8", "#9d9d9d", "#c0392b"


def monitor_info(frame: pd.DataFrame, bucket: str | None = None) -> pd.DataFrame:
    """One row per time bucket: requests, errors, error_rate, p50_ms, p95_ms, tokens_per_1k, cost_per_1k,
    rated, negative_share. The bucket is chosen for ~30 buckets over the span, unless given."""
    if frame.empty:
        return pd.DataFrame(columns=["time", "requests", "errors", "error_rate", "p50_ms", "p95_ms",
                                     "tokens_per_1k", "cost_per_1k", "rated", "negative_share"])
    f = frame.copy()
    if bucket is None:
        span_s = max(1.0, (f["time"].max() - f["time"].min()).total_seconds())
        bucket = f"{max(1, int(span_s / 30))}s"
    f["error"] = f["status"] != "OK"
    f["tokens"] = f["tokens_prompt"].fillna(0) + f["tokens_completion"].fillna(0)
    f["neg"] = f["negative"].map(lambda v: float(v) if isinstance(v, bool) else None)
    g = f.groupby(pd.Grouper(key="time", freq=bucket))
    ok = f[~f["error"]].groupby(pd.Grouper(key="time", freq=bucket))["latency_ms"]
    out = pd.DataFrame({
        "requests": g.size(), "errors": g["error"].sum(),
        "p50_ms": ok.quantile(0.5), "p95_ms": ok.quantile(0.95),
        "tokens_per_1k": g["tokens"].sum() * 1000, "cost_per_1k": g["cost_usd"].sum(min_count=1) * 1000,
        "rated": g["neg"].count(), "negative_share": g["neg"].mean(),
    })
    out["tokens_per_1k"] /= out["requests"].where(out["requests"] > 0)
    out["cost_per_1k"] /= out["requests"].where(out["requests"] > 0)
    out["error_rate"] = out["errors"] / out["requests"].where(out["requests"] > 0)
    return out[out["requests"] > 0].reset_index()


def plot_monitor(frame: pd.DataFrame, baseline: list[float] | None, *, title: str = "",
                 bucket: str | None = None) -> go.Figure:
    info = monitor_info(frame, bucket)
    fig = make_subplots(rows=2, cols=3, subplot_titles=PANELS, specs=[[{}, {}, {}], [{"secondary_y": True}, {}, {}]],
                        horizontal_spacing=0.07, vertical_spacing=0.16)
    t = info["time"]
    fig.add_bar(x=t, y=info["requests"], name="requests", marker_color=PROD, row=1, col=1)
    fig.add_scatter(x=t, y=info["p50_ms"], name="p50", mode="lines+markers", line_color=PROD, row=1, col=2)
    fig.add_scatter(x=t, y=info["p95_ms"], name="p95", mode="lines+markers", line_color=BAD, row=1, col=2)
    fig.add_scatter(x=t, y=info["error_rate"], name="error rate", mode="lines+markers", line_color=BAD, row=1, col=3)
    fig.add_scatter(x=t, y=info["tokens_per_1k"], name="tokens / 1k", mode="lines", line_color=PROD, row=2, col=1)
    fig.add_scatter(x=t, y=info["cost_per_1k"], name="USD / 1k", mode="lines", line_color=SWEEP, row=2, col=1,
                    secondary_y=True)
    scores = frame["top_score"].dropna() if not frame.empty else pd.Series(dtype=float)
    fig.add_histogram(x=scores, name="production", histnorm="probability", marker_color=PROD, opacity=0.7,
                      row=2, col=2)
    if baseline:
        fig.add_histogram(x=baseline, name="sweep", histnorm="probability", marker_color=SWEEP, opacity=0.7,
                          row=2, col=2)
    fig.add_scatter(x=t, y=info["negative_share"], name="negative share", mode="lines+markers", line_color=BAD,
                    row=2, col=3, connectgaps=True)
    fig.update_yaxes(range=[0, 1], row=1, col=3)
    fig.update_yaxes(range=[0, 1], row=2, col=3)
    fig.update_layout(barmode="overlay", height=620, title=title, legend={"orientation": "h", "y": -0.08},
                      margin={"t": 80, "l": 50, "r": 30, "b": 40})
    return fig
