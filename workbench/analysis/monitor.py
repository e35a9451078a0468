"""`workbench.monitor(deployment)`: a served deployment's traces as numbers and one figure, in the notebook.

    >>> m = workbench.monitor("quickstart-serve-1a2b3c4d", tracking_uri="sqlite:///mlruns/mlflow.db")  # doctest: +SKIP
    >>> m.summary["latency_p95_ms"], m.summary["negative_share"], m.summary["drift_p"]                   # doctest: +SKIP
    >>> m          # shows the figure                                                                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from workbench.analysis.plots.monitor import plot_monitor
from workbench.handover.serve.monitor import MonitorData, monitor_data, monitor_summary


@dataclass(frozen=True)
class Monitor:
    data: MonitorData
    summary: dict
    figure: go.Figure

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.figure)


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def monitor(deployment: str, *, tracking_uri: str = "sqlite:///mlruns/mlflow.db", since: datetime | None = None,
            bucket: str | None = None) -> Monitor:
    """Read the deployment's traces back (since `since`, if given) and draw requests, latency, errors, tokens
    and cost, retrieval drift against the sweep and negative feedback. `bucket`: a pandas frequency ("1min")."""
    data = monitor_data(deployment, tracking_uri=tracking_uri,
                        since_ms=int(since.timestamp() * 1000) if since is not None else None)
    s = monitor_summary(data)
    title = (f"{deployment}: {s['requests']} requests, errors {_fmt(s['error_rate'], '.1%')}, p50 "
             f"{_fmt(s['latency_p50_ms'], '.0f')} ms, p95 {_fmt(s['latency_p95_ms'], '.0f')} ms, negative feedback "
             f"{_fmt(s['negative_share'], '.0%')} of {s['rated']}, top-score drift KS {_fmt(s['drift_ks'], '.2f')} "
             f"(p {_fmt(s['drift_p'], '.3f')})")
    return Monitor(data, s, plot_monitor(data.frame, data.baseline, title=title, bucket=bucket))
