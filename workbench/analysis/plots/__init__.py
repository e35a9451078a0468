"""Comparison figures (plotly graph_objects), split the Optuna way: numbers, then drawing.

Each figure first gets its numbers from an `*_info` function (pure pandas, testable without plotly),
then a tiny `plot_*` draws them without any logic of its own. The frames are the sweep's:
`results.to_frame()` (one row per variant, index `variant`) and `results.questions()` (one row per
variant × question). Figures size themselves to their container (no fixed width), label every variant
with the part of its label that differs (`labels.short_labels`) and fix bounded metrics to their
declared range. Points, bars and cells carry their variant (and question) for click handlers.

One module per figure: `pareto`, `bars`, `heatmap`, `search`; what they share is in `labels`.
"""

from workbench.analysis.plots.bars import DEFAULT_BAR_METRICS, MetricBarsInfo, metric_bars_info, plot_metric_bars
from workbench.analysis.plots.heatmap import HeatmapInfo, heatmap_figure, heatmap_info, plot_question_heatmap
from workbench.analysis.plots.labels import axis_title, metric_range, short_labels
from workbench.analysis.plots.pareto import ParetoInfo, pareto_info, plot_pareto
from workbench.analysis.plots.search import SearchInfo, plot_search, search_info

__all__ = ["DEFAULT_BAR_METRICS", "HeatmapInfo", "MetricBarsInfo", "ParetoInfo", "axis_title", "heatmap_figure", "heatmap_info",
           "metric_bars_info", "metric_range", "pareto_info", "plot_metric_bars", "plot_pareto",
           "plot_question_heatmap", "plot_search", "search_info", "SearchInfo", "short_labels"]
