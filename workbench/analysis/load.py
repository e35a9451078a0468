"""Rebuild an earlier sweep's results from its tracking store alone (no re-run)."""

from __future__ import annotations

from workbench.analysis.results import SweepResults
from workbench.tracking import Tracker, open_reader


def load_sweep(sweep_id: str, tracking_uri: str = "sqlite:///mlruns/mlflow.db", *, tracker: Tracker | None = None) -> SweepResults:
    """Rebuild a finished sweep's SweepResults from MLflow alone (or from `tracker`): spec, variants, rows.

    >>> results = load_sweep("20261127-025350-17646e")   # doctest: +SKIP
    """
    tracker = tracker if tracker is not None else open_reader(tracking_uri)
    return SweepResults(**tracker.read_sweep(sweep_id).result())
