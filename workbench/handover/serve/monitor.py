"""A deployment's traces read back as numbers: what `workbench.monitor(...)` shows.

`monitor_frame` is one row per served request (time, status, latencies, tokens, cost, retrieval top score,
feedback), read from trace tags only (no spans: fast for many traces). `monitor_summary` is the few numbers
to watch, pure pandas: requests, error rate, p50/p95 latency, tokens and cost per 1,000 requests, the
negative-feedback share, and drift of the retrieval top score against the sweep's (`baseline.py`), as the
two-sample Kolmogorov-Smirnov statistic and its p-value. The figures are in `analysis/plots/monitor.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from workbench.handover.serve.baseline import TAG as BASELINE_TAG


@dataclass(frozen=True)
class MonitorData:
    deployment: str
    frame: pd.DataFrame
    baseline: list[float] | None  # the sweep's retrieval top scores, when the service could measure them


def monitor_data(deployment: str, *, tracking_uri: str = "sqlite:///mlruns/mlflow.db",
                 since_ms: int | None = None) -> MonitorData:
    from workbench.tracking.serve_log import deployment_tag, read_traces, trace_row

    rows = [trace_row(t) for t in read_traces(tracking_uri, deployment, since_ms=since_ms)]
    frame = pd.DataFrame(rows, columns=list(_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time_ms"], unit="ms", utc=True)
    return MonitorData(deployment, frame, deployment_tag(tracking_uri, deployment, BASELINE_TAG))


_COLUMNS = ("trace_id", "answer_id", "time_ms", "status", "latency_ms", "generate_ms", "tokens_prompt",
            "tokens_completion", "cost_usd", "top_score", "rated", "negative", "positive", "config_hash", "sweep_id")


def monitor_summary(data: MonitorData) -> dict[str, float | int | None]:
    f = data.frame
    n = len(f)
    ok = f[f["status"] == "OK"]
    rated = f[f["rated"].astype(bool)]
    out: dict[str, float | int | None] = {
        "requests": n,
        "error_rate": float((f["status"] != "OK").mean()) if n else None,
        "latency_p50_ms": _q(ok["latency_ms"], 0.5),
        "latency_p95_ms": _q(ok["latency_ms"], 0.95),
        "overhead_p95_ms": _q(ok["latency_ms"] - ok["generate_ms"], 0.95),
        "tokens_per_1k": float((ok["tokens_prompt"].fillna(0) + ok["tokens_completion"].fillna(0)).sum() * 1000 / n)
        if n else None,
        "cost_usd_per_1k": float(ok["cost_usd"].sum() * 1000 / n) if n and ok["cost_usd"].notna().any() else None,
        "rated": len(rated),
        "negative_share": float(rated["negative"].astype(bool).mean()) if len(rated) else None,
        "top_score_mean": _mean(f["top_score"]),
        "sweep_top_score_mean": float(pd.Series(data.baseline).mean()) if data.baseline else None,
        "drift_ks": None,
        "drift_p": None,
    }
    scores = f["top_score"].dropna()
    if data.baseline and len(scores):
        from scipy.stats import ks_2samp

        test = ks_2samp(scores.to_numpy(), data.baseline)
        out["drift_ks"], out["drift_p"] = float(test.statistic), float(test.pvalue)
    return out


def _q(series: pd.Series, q: float) -> float | None:
    series = series.dropna()
    return float(series.quantile(q)) if len(series) else None


def _mean(series: pd.Series) -> float | None:
    series = series.dropna()
    return float(series.mean()) if len(series) else None
