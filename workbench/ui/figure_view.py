"""One slot for a plotly figure that fills its container's width and reports clicks on its points.

plotly 7's `go.FigureWidget` (an anywidget) draws its figure once, before its element is on the page,
so plotly.js falls back to its default 700 px and never measures again (JupyterLab: a ~520–700 px figure
in a 1,200 px tab). With plotly.js's `responsive` config a figure re-measures on a window resize; the tiny
`FitWidth` widget next to it announces one whenever a figure in its box is drawn narrower or wider than
its box (first drawn, tab shown, window or sidebar resized), and stops once they match.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

import ipywidgets as W

from workbench.ui.common import message

_FIT_WIDTH_ESM = """
function render({ el }) {
  el.style.display = 'none';
  let box = null, queued = false;
  const stale = () => [...box.querySelectorAll('.js-plotly-plot')].some((gd) => {
    const svg = gd.querySelector('.main-svg');
    const width = gd.getBoundingClientRect().width;
    return svg && width > 0 && Math.abs(svg.getBoundingClientRect().width - width) > 2;
  });
  const check = () => {
    if (queued || !box || !stale()) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; window.dispatchEvent(new Event('resize')); });
  };
  const observer = new ResizeObserver(check);
  const attach = () => {
    box = el.parentElement;
    if (box && el.isConnected) observer.observe(box); else setTimeout(attach, 100);
  };
  attach();
  return () => observer.disconnect();
}
export default { render };
"""


def _figure_widget_class():
    """plotly's FigureWidget needs anywidget (plotly ≥ 6); without it we show the figure in an Output."""
    try:
        import anywidget  # noqa: F401
        import plotly.graph_objects as go

        return go.FigureWidget
    except ImportError:
        return None


@functools.cache
def _fit_width_class() -> type:
    import anywidget

    class FitWidth(anywidget.AnyWidget):
        _esm = _FIT_WIDTH_ESM

    return FitWidth


@dataclass(frozen=True)
class Click:
    """A click on one point: the trace's name, the point's index, its x and y, and its customdata."""

    trace: str | None
    point: Any
    x: Any
    y: Any
    customdata: Any


class FigureView:
    """A `go.FigureWidget` updated in place (or an Output showing the figure when anywidget is missing),
    or a red message when the figure cannot be drawn. `on_click(Click)` is called for a click on a point.

    `figure` is the last go.Figure shown (None when the slot holds a message), for tests and users.
    """

    def __init__(self, on_click: Callable[[Click], None] | None = None) -> None:
        self.figure = None
        self.on_click = on_click
        self.error = W.HTML()
        self._cls = _figure_widget_class()
        self.figure_widget = self._cls() if self._cls is not None else None
        self.output = W.Output() if self._cls is None else None
        full = W.Layout(width="100%")
        if self.figure_widget is not None:
            # re-measure on a window resize (FitWidth sends one when the drawn width is stale)
            self.figure_widget._config = {**self.figure_widget._config, "responsive": True, "displaylogo": False}
            children = [self.error, _fit_width_class()(), self.figure_widget]
        else:
            children = [self.error, self.output]
        self.widget = W.VBox(children, layout=full)

    def show(self, figure) -> None:
        self.figure = figure
        self.error.value = ""
        if self.figure_widget is not None:
            with self.figure_widget.batch_update():
                self.figure_widget.data = []
                self.figure_widget.add_traces(list(figure.data))
                self.figure_widget.layout = figure.layout
            for trace in self.figure_widget.data:
                trace.on_click(self._clicked)
        else:
            # The plotly mimetype JupyterLab renders (jupyterlab-plotly ships with plotly); JSON-safe.
            bundle = {"application/vnd.plotly.v1+json": json.loads(figure.to_json()), "text/plain": "<plotly figure>"}
            self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def _clicked(self, trace, points, state) -> None:
        if self.on_click is None or not points.point_inds:  # plotly tells every trace, clicked or not
            return
        point = points.point_inds[0]
        custom = getattr(trace, "customdata", None)
        data = None
        if custom is not None and isinstance(point, int) and point < len(custom):
            data = custom[point]
        self.on_click(Click(trace.name, point, points.xs[0], points.ys[0], data))

    def click(self, trace_index: int, point: Any, x: Any = None, y: Any = None) -> None:
        """Deliver a click the way the browser does (the FigureWidget's points-callback message)."""
        self.figure_widget._js2py_pointsCallback = {
            "event_type": "plotly_click",
            "points": {"trace_indexes": [trace_index], "point_indexes": [point], "xs": [x], "ys": [y]},
            "device_state": None,
            "selector": None,
        }

    def fail(self, text: str) -> None:
        self.figure = None
        self.error.value = message(text, "error")
        if self.figure_widget is not None:
            self.figure_widget.data = []
        else:
            self.output.outputs = ()
