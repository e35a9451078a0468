"""Monitor tab: a served deployment's traces as `workbench.monitor(...)` shows them, in the Workbench.

Pick the store and the deployment (the experiments `workbench serve` created there) and a time window;
Refresh reads the traces back (`analysis.monitor.monitor`) and draws its six-panel figure with the summary line.
Nothing is read from MLflow until Refresh is clicked: building the Workbench stays instant.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import ipywidgets as W

from workbench.errors import WorkbenchError
from workbench.ui.common import message, widget_wording
from workbench.ui.figure_view import FigureView

log = logging.getLogger(__name__)

WINDOWS = (("last 15 minutes", timedelta(minutes=15)), ("last hour", timedelta(hours=1)),
           ("last 24 hours", timedelta(days=1)), ("last 7 days", timedelta(days=7)), ("all", None))


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


class MonitorTab:
    def __init__(self, tracking_uri: str) -> None:
        self.monitor = None  # the last `Monitor` drawn (its summary and figure), for tests and users
        self.tracking_uri = W.Text(value=tracking_uri, description="tracking URI", layout=W.Layout(width="70%"))
        self.deployment = W.Combobox(options=[], placeholder="deployment (experiment) name", description="deployment",
                                     ensure_option=False, layout=W.Layout(width="70%"))
        self.window = W.Dropdown(options=WINDOWS, value=WINDOWS[-1][1], description="window")
        self.refresh_button = W.Button(description="Refresh", icon="refresh", button_style="primary")
        self.message = W.HTML()
        self.summary = W.HTML()
        self.figure = FigureView()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = W.VBox([self.tracking_uri, self.deployment, W.HBox([self.window, self.refresh_button]),
                              self.message, self.summary, self.figure.widget])

    def list_deployments(self) -> list[str]:
        """Offer the store's deployments in the picker (the first one chosen when none is)."""
        from workbench.tracking.serve_log import list_deployments

        names = list_deployments(self.tracking_uri.value.strip())
        self.deployment.options = names
        if names and not self.deployment.value.strip():
            self.deployment.value = names[0]
        return names

    def refresh(self) -> None:
        """List the deployments, then read the chosen one's traces in the window and draw them."""
        from workbench.analysis.monitor import monitor

        self.message.value = ""
        try:
            names = self.list_deployments()
            name = self.deployment.value.strip()
            if not name:
                self.message.value = message(
                    "no deployment in this store yet: serve an export with `workbench serve winner.yaml "
                    f"--tracking-uri {self.tracking_uri.value.strip()}`, then Refresh", "info")
                return
            since = datetime.now(timezone.utc) - self.window.value if self.window.value is not None else None
            m = monitor(name, tracking_uri=self.tracking_uri.value.strip(), since=since)
        except WorkbenchError as exc:
            self.message.value = message(widget_wording(str(exc)), "error")
            return
        except Exception as exc:  # shown in the tab, logged with its traceback for a bug report
            log.exception("monitor failed")
            self.message.value = message(f"reading the deployment failed: {type(exc).__name__}: {exc}", "error")
            return
        self.monitor = m
        s = m.summary
        self.summary.value = message(
            f"{name}: {s['requests']} requests ({self.window.label}), errors {_fmt(s['error_rate'], '.1%')}, "
            f"latency p50 {_fmt(s['latency_p50_ms'], '.0f')} ms / p95 {_fmt(s['latency_p95_ms'], '.0f')} ms, "
            f"negative feedback {_fmt(s['negative_share'], '.0%')} of {s['rated']} rated"
            + ("" if name in names else " (not a deployment `workbench serve` created)"), "info")
        self.figure.show(m.figure)
