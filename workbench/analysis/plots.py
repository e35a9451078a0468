"""Comparison figures (plotly graph_objects), split the Optuna way: numbers, then drawing.

Each figure first gets its numbers from an `*_info` function (pure pandas, testable without
plotly), then tiny `_make_*` helpers turn them into a `go.Figure` without any logic of their own.
The frames are the sweep's: `results.to_frame()` (one row per variant, index `variant`) and
`results.questions()` (one row per variant × question).

Over 400 lines: three figures, each a pure `*_info` function plus tiny `_make_*` helpers, sharing the
formatting helpers at the top; splitting them apart would only move those helpers around.

>>> frame = pd.DataFrame({"label": ["small", "big"], "f1": [0.4, 0.6], "latency_total_p95_s": [1.0, 3.0]},
...                      index=pd.Index(["aaa", "bbb"], name="variant"))
>>> pareto_info(frame).points["on_front"].tolist()
[True, True]
>>> fig = plot_pareto(frame)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from workbench.analysis.stats import StatsError, pareto_front, scored
from workbench.scoring.aggregate import direction

DEFAULT_BAR_METRICS = ("f1", "exact_match", "hit_at_k")
_AXIS_TITLES = {
    "latency_total_p95_s": "total latency p95 (s)",
    "latency_total_p50_s": "total latency p50 (s)",
    "latency_total_mean_s": "mean total latency (s)",
    "latency_retrieve_p95_s": "retrieval latency p95 (s)",
    "latency_generate_p95_s": "generation latency p95 (s)",
    "cost_usd_per_1k": "cost per 1,000 questions (USD)",
    "cost_usd": "cost of the run (USD)",
    "tokens_prompt_mean": "prompt tokens per question",
}


def axis_title(column: str) -> str:
    """A readable axis title for a frame column.

    >>> axis_title("latency_total_p95_s")
    'total latency p95 (s)'
    """
    return _AXIS_TITLES.get(column, column)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, (int, float)) and abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{float(x):.{digits}g}"


def _shorten(text: Any, limit: int = 90) -> str:
    text = "" if text is None or (isinstance(text, float) and math.isnan(text)) else " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def _check_column(frame: pd.DataFrame, column: str, argument: str) -> None:
    if column not in frame.columns or column not in _numeric_columns(frame):
        raise StatsError(f"{argument}={column!r} is not a numeric column of the frame; choose one of: {', '.join(_numeric_columns(frame))}")


def _labels(frame: pd.DataFrame) -> pd.Series:
    if "label" in frame.columns:
        return frame["label"].astype(str)
    return pd.Series([str(v) for v in frame.index], index=frame.index)


def _display_names(frame: pd.DataFrame) -> dict[str, str]:
    """Variant -> legend name: the label, with the short hash added when labels repeat."""
    labels = _labels(frame)
    repeated = labels.duplicated(keep=False)
    return {v: (f"{labels[v]} [{v}]" if repeated[v] else labels[v]) for v in frame.index}


# ---------------------------------------------------------------- Pareto scatter


class ParetoInfo(NamedTuple):
    """What `plot_pareto` draws.

    `points`: one row per variant that has both values (variant, label, quality, x, on_front, ci_low,
    ci_high, n, cost_usd_per_1k, tokens_prompt_mean, hover); `front`: the front as (x, quality)
    pairs sorted by x; `missing`: variants left out for lack of a value.
    """

    quality: str
    x: str
    points: pd.DataFrame
    front: list[tuple[float, float]]
    x_goal: str = "min"
    missing: tuple[str, ...] = ()


def _hover(row: pd.Series, quality: str, x: str) -> str:
    lines = [f"<b>{row['label']}</b>", f"variant {row['variant']}"]
    ci = "" if math.isnan(row["ci_low"]) else f" [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
    n = "" if math.isnan(row["n"]) else f" (n={int(row['n'])})"
    lines.append(f"{quality} {_fmt(row['quality'])}{ci}{n}")
    lines.append(f"{axis_title(x)}: {_fmt(row['x'])}")
    if x != "cost_usd_per_1k":
        lines.append(f"cost per 1k questions: ${_fmt(row['cost_usd_per_1k'])}")
    lines.append(f"prompt tokens per question: {_fmt(row['tokens_prompt_mean'])}")
    return "<br>".join(lines)


def pareto_info(frame: pd.DataFrame, quality: str = "f1", x: str = "latency_total_p95_s", x_goal: str = "min") -> ParetoInfo:
    """The points and front of a quality-vs-`x` Pareto plot (`x` minimised by default).

    The front is `stats.pareto_front(frame, {quality: direction(quality), x: x_goal})`: quality in its
    declared direction (higher f1, lower answer length).

    >>> f = pd.DataFrame({"f1": [0.5, 0.4, 0.6], "cost_usd_per_1k": [0.0, 0.0, 1.0]}, index=["a", "b", "c"])
    >>> info = pareto_info(f, x="cost_usd_per_1k")
    >>> info.points.loc[info.points["on_front"], "variant"].tolist(), info.front
    (['a', 'c'], [(0.0, 0.5), (1.0, 0.6)])
    """
    if x_goal not in ("min", "max"):
        raise StatsError(f"x_goal={x_goal!r}; use 'min' (lower {x} is better) or 'max'")
    _check_column(frame, quality, "quality")
    _check_column(frame, x, "x")
    on_front = set(pareto_front(frame, {quality: direction(quality), x: x_goal}))
    labels = _labels(frame)

    def col(name: str) -> pd.Series:
        return frame[name].astype(float) if name in frame.columns else pd.Series(float("nan"), index=frame.index)

    points = pd.DataFrame(
        {
            "variant": [str(v) for v in frame.index],
            "label": labels.to_numpy(),
            "quality": col(quality).to_numpy(),
            "x": col(x).to_numpy(),
            "on_front": [v in on_front for v in frame.index],
            "ci_low": col(f"{quality}_ci_low").to_numpy(),
            "ci_high": col(f"{quality}_ci_high").to_numpy(),
            "n": col(f"{quality}_n").to_numpy(),
            "cost_usd_per_1k": col("cost_usd_per_1k").to_numpy(),
            "tokens_prompt_mean": col("tokens_prompt_mean").to_numpy(),
        }
    )
    shown = points["quality"].notna() & points["x"].notna()
    missing = tuple(points.loc[~shown, "variant"])
    points = points[shown].reset_index(drop=True)
    points["hover"] = [_hover(row, quality, x) for _, row in points.iterrows()]
    front_points = points[points["on_front"]].sort_values(["x", "quality"], kind="stable")
    front = [(float(a), float(b)) for a, b in zip(front_points["x"], front_points["quality"])]
    return ParetoInfo(quality, x, points, front, x_goal, missing)


def _make_pareto_trace(points: pd.DataFrame, name: str, color: str, size: int) -> go.Scatter:
    return go.Scatter(
        x=points["x"],
        y=points["quality"],
        mode="markers",
        name=name,
        marker={"color": color, "size": size},
        error_y={"type": "data", "symmetric": False, "array": points["ci_high"] - points["quality"],
                 "arrayminus": points["quality"] - points["ci_low"], "thickness": 1, "color": color},
        text=points["hover"],
        hovertemplate="%{text}<extra></extra>",
    )


def _make_front_line(info: ParetoInfo) -> go.Scatter:
    return go.Scatter(
        x=[p[0] for p in info.front],
        y=[p[1] for p in info.front],
        mode="lines",
        name="Pareto front",
        line={"color": "#d62728", "shape": "hv" if info.x_goal == "min" else "vh", "width": 2},
        hoverinfo="skip",
    )


def _make_pareto_figure(info: ParetoInfo) -> go.Figure:
    dominated = info.points[~info.points["on_front"]]
    front = info.points[info.points["on_front"]]
    fig = go.Figure(
        [
            _make_pareto_trace(dominated, "dominated", "#9e9e9e", 9),
            _make_pareto_trace(front, "on the front", "#d62728", 12),
            _make_front_line(info),
        ]
    )
    better = "lower" if info.x_goal == "min" else "higher"
    up = "up" if direction(info.quality) == "max" else "down"
    title = f"{info.quality} vs {axis_title(info.x)} ({up} and {'left' if info.x_goal == 'min' else 'right'} is better)"
    if info.missing:
        title += f"<br><sup>not shown, no value: {', '.join(info.missing)}</sup>"
    fig.update_layout(
        title=title,
        xaxis_title=f"{axis_title(info.x)}, {better} is better",
        yaxis_title=info.quality,
        hovermode="closest",
        template="plotly_white",
    )
    return fig


def plot_pareto(frame: pd.DataFrame, quality: str = "f1", x: str = "latency_total_p95_s", x_goal: str = "min") -> go.Figure:
    """Quality vs latency (or cost) per variant with the Pareto front highlighted and stepped.

    Three traces: dominated variants, front variants (both with CI error bars and hover: label,
    quality with CI and n, x, cost, prompt tokens) and the front's step line.

    >>> f = pd.DataFrame({"label": ["a", "b"], "f1": [0.5, 0.6], "cost_usd_per_1k": [0.0, 0.0]}, index=["a", "b"])
    >>> len(plot_pareto(f, x="cost_usd_per_1k").data)
    3
    """
    return _make_pareto_figure(pareto_info(frame, quality, x, x_goal))


# ---------------------------------------------------------------- metric bars


def _available_bar_metrics(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if f"{c}_ci_low" in frame.columns and f"{c}_ci_high" in frame.columns]


def metric_bars_info(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table for the bar chart: variant, label, metric, mean, ci_low, ci_high, n.

    A metric needs its aggregate and CI columns (`f1`, `f1_ci_low`, `f1_ci_high`; `f1_n` optional).

    >>> f = pd.DataFrame({"label": ["x"], "f1": [0.5], "f1_ci_low": [0.4], "f1_ci_high": [0.6], "f1_n": [20.0]},
    ...                  index=pd.Index(["aaa"], name="variant"))
    >>> metric_bars_info(f, ["f1"]).to_dict("records")
    [{'variant': 'aaa', 'label': 'x', 'metric': 'f1', 'mean': 0.5, 'ci_low': 0.4, 'ci_high': 0.6, 'n': 20}]
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    if not metrics:
        raise StatsError(f"metrics is empty; choose from: {', '.join(_available_bar_metrics(frame))}")
    available = _available_bar_metrics(frame)
    unknown = [m for m in metrics if m not in available]
    if unknown:
        raise StatsError(f"unknown metric(s) {unknown} for metrics=; the frame has CIs for: {', '.join(available) or 'nothing'}")
    labels = _labels(frame)
    records = []
    for metric in metrics:
        for v in frame.index:
            n = frame.at[v, f"{metric}_n"] if f"{metric}_n" in frame.columns else float("nan")
            records.append(
                {
                    "variant": str(v),
                    "label": labels[v],
                    "metric": metric,
                    "mean": float(frame.at[v, metric]),
                    "ci_low": float(frame.at[v, f"{metric}_ci_low"]),
                    "ci_high": float(frame.at[v, f"{metric}_ci_high"]),
                    "n": pd.NA if pd.isna(n) else int(n),
                }
            )
    out = pd.DataFrame.from_records(records, columns=["variant", "label", "metric", "mean", "ci_low", "ci_high", "n"])
    out["n"] = out["n"].astype("Int64")
    return out


def _bar_hover(row: pd.Series, name: str) -> str:
    n = "n/a" if pd.isna(row["n"]) else int(row["n"])
    ci = f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
    return f"<b>{name}</b><br>variant {row['variant']}<br>{row['metric']} {_fmt(row['mean'])} {ci}<br>n={n}"


def _make_bar_trace(rows: pd.DataFrame, name: str, hover: list[str]) -> go.Bar:
    return go.Bar(
        x=rows["metric"],
        y=rows["mean"],
        name=name,
        error_y={"type": "data", "symmetric": False,
                 "array": rows["ci_high"] - rows["mean"], "arrayminus": rows["mean"] - rows["ci_low"]},
        text=hover,
        textposition="none",
        hovertemplate="%{text}<extra></extra>",
    )


def plot_metric_bars(frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars: one group per metric, one bar per variant, asymmetric 95 % CI error bars.

    `metrics=None` shows whichever of f1, exact_match and hit_at_k the frame has.

    >>> f = pd.DataFrame({"label": ["x", "y"], "f1": [0.5, 0.7], "f1_ci_low": [0.4, 0.6], "f1_ci_high": [0.6, 0.8]},
    ...                  index=["aaa", "bbb"])
    >>> len(plot_metric_bars(f).data)
    2
    """
    if metrics is None:
        metrics = [m for m in DEFAULT_BAR_METRICS if m in _available_bar_metrics(frame)]
        if not metrics:
            raise StatsError(
                f"the frame has none of the default metrics {list(DEFAULT_BAR_METRICS)}; pass metrics= from: "
                f"{', '.join(_available_bar_metrics(frame)) or 'nothing'}"
            )
    info = metric_bars_info(frame, metrics)
    names = _display_names(frame)
    traces = []
    for v in frame.index:
        rows = info[info["variant"] == str(v)]
        traces.append(_make_bar_trace(rows, names[v], [_bar_hover(r, names[v]) for _, r in rows.iterrows()]))
    fig = go.Figure(traces)
    fig.update_layout(barmode="group", title="Mean per variant with bootstrap 95 % CI", yaxis_title="mean", template="plotly_white")
    return fig


# ---------------------------------------------------------------- question heatmap


def heatmap_info(questions: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Variant × question matrix of `metric` (NaN: failed or unscored), hardest disagreements first.

    Rows are variants in their order in `questions`; columns are question ids ordered by the
    standard deviation of the score across variants (population, descending; questions with no
    score last; ties keep dataset order).

    >>> q = pd.DataFrame({"variant": ["a", "a", "b", "b"], "question_id": ["q1", "q2"] * 2,
    ...                   "f1": [1.0, 1.0, 1.0, 0.0]})
    >>> heatmap_info(q, "f1").columns.tolist()
    ['q2', 'q1']
    """
    values = scored(questions, metric)
    variants = list(dict.fromkeys(questions["variant"]))
    question_ids = list(dict.fromkeys(questions["question_id"]))
    matrix = values.groupby(["variant", "question_id"], sort=False)["value"].mean().unstack("question_id")
    matrix = matrix.reindex(index=variants, columns=question_ids)
    spread = matrix.std(axis=0, ddof=0)
    order = (-spread.fillna(-1.0).to_numpy()).argsort(kind="stable")  # ties keep dataset order, no score last
    matrix = matrix.iloc[:, order]
    matrix.index.name, matrix.columns.name = "variant", "question_id"
    return matrix


def _heatmap_text(questions: pd.DataFrame, matrix: pd.DataFrame, metric: str) -> list[list[str]]:
    """Hover text per cell: question, the variant's answer (or its error) and the score."""
    first = questions.drop_duplicates(["variant", "question_id"]).set_index(["variant", "question_id"])
    text = []
    for v in matrix.index:
        row = []
        for qid in matrix.columns:
            cell = first.loc[(v, qid)] if (v, qid) in first.index else pd.Series(dtype=object)
            error = cell.get("error")
            answer = f"error: {_shorten(error)}" if isinstance(error, str) and error else _shorten(cell.get("answer"))
            row.append(
                f"<b>{qid}</b> {_shorten(cell.get('question'))}<br>variant {v}<br>"
                f"answer: {answer}<br>{metric}: {_fmt(matrix.at[v, qid])}"
            )
        text.append(row)
    return text


def _make_heatmap(matrix: pd.DataFrame, text: list[list[str]], metric: str, total: int) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy(),
            x=[str(c) for c in matrix.columns],
            y=[str(i) for i in matrix.index],
            text=text,
            hovertemplate="%{text}<extra></extra>",
            colorscale="Viridis",
            colorbar={"title": metric},
        )
    )
    shown = f"the {matrix.shape[1]} of {total} questions" if matrix.shape[1] < total else f"all {total} questions"
    fig.update_layout(
        title=f"{metric} per question: {shown} where variants disagree most first",
        xaxis_title="question",
        yaxis_title="variant",
        xaxis={"type": "category"},
        yaxis={"type": "category", "autorange": "reversed"},
        template="plotly_white",
    )
    return fig


def plot_question_heatmap(questions: pd.DataFrame, metric: str = "f1", max_questions: int = 50) -> go.Figure:
    """Heatmap of `metric` per variant and question, the `max_questions` most disputed questions.

    Hover shows the question, the variant's answer (or error) and the score.

    >>> q = pd.DataFrame({"variant": ["a", "b"], "question_id": ["q1", "q1"], "question": ["Who?"] * 2,
    ...                   "answer": ["x", "y"], "f1": [1.0, 0.0]})
    >>> plot_question_heatmap(q).data[0].z.shape
    (2, 1)
    """
    if isinstance(max_questions, bool) or not isinstance(max_questions, int) or max_questions < 1:
        raise StatsError(f"max_questions must be a positive integer, got {max_questions!r}")
    matrix = heatmap_info(questions, metric)
    total = matrix.shape[1]
    matrix = matrix.iloc[:, :max_questions]
    return _make_heatmap(matrix, _heatmap_text(questions, matrix, metric), metric, total)


__all__ = ["ParetoInfo", "axis_title", "heatmap_info", "metric_bars_info", "pareto_info", "plot_metric_bars",
           "plot_pareto", "plot_question_heatmap"]
