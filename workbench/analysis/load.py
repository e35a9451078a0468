"""Rebuild an earlier sweep's results from its tracking store alone (no re-run)."""

from __future__ import annotations

from workbench.analysis.results import SweepResults
from workbench.tracking.mlflow_tracker import read_sweep


def load_sweep(sweep_id: str, tracking_uri: str = "sqlite:///mlruns/mlflow.db") -> SweepResults:
    """Rebuild a finished sweep's SweepResults from MLflow alone: spec, variants, per-question rows.

    >>> results = load_sweep("20261127-025350-17646e")   # doctest: +SKIP
    """
    return SweepResults(**read_sweep(sweep_id, tracking_uri))
