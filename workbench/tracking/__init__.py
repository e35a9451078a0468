"""Tracking: the Tracker protocol and its MLflow, helper-process and null implementations. Every mlflow import
of the package lives here (a test proves it).

    protocol.py        the Tracker protocol, its answers (SweepStart, LoggedRun) and calling convention
    process.py         ProcessTracker: any tracker run in the helper process (worker.py is that process)
    mlflow_tracker.py  MlflowTracker: runs, params, metrics, tables, traces; store.py: the sqlite store
    readback.py        a logged sweep read back;  export_log.py: what an export leaves in MLflow
    null.py            NullTracker: tracking disabled

Importing this package is cheap: MLflow and pandas are imported only by what uses them.
"""

from __future__ import annotations

from workbench.events import span
from workbench.tracking.null import NullTracker
from workbench.tracking.protocol import LoggedRun, SweepStart, Tracker

__all__ = ["LoggedRun", "NullTracker", "SweepStart", "Tracker", "open_reader", "open_tracker", "stop_idle_helper",
           "warm_up"]

MLFLOW_TRACKER = "workbench.tracking.mlflow_tracker:MlflowTracker"


def open_tracker(cfg, experiment: str) -> Tracker:
    """A sweep's tracker: MLflow in the helper process, or a NullTracker when tracking is off.

    A bad tracking URI fails here, before anything is written. Call it in the sweep's own thread: a sweep
    started inside the caller's active MLflow run nests under it.
    """
    if not cfg.enabled:
        return NullTracker()
    from workbench.tracking.mlflow_tracker import check_tracking_uri, run_source
    from workbench.tracking.process import ProcessTracker, outer_run_id

    with span("tracking.init"):
        check_tracking_uri(cfg, experiment)
    return ProcessTracker(MLFLOW_TRACKER, cfg, experiment, outer_run_id=outer_run_id(), source=run_source())


def open_reader(tracking_uri: str) -> Tracker:
    """A tracker for reading logged sweeps back (`read_sweep`), in this process."""
    from workbench.spec import TrackingConfig
    from workbench.tracking.mlflow_tracker import MlflowTracker
    from workbench.tracking.store import require_existing_store

    require_existing_store(tracking_uri)  # before MLflow would create (and migrate) an empty one
    return MlflowTracker(TrackingConfig(tracking_uri=tracking_uri), experiment=None)


def warm_up(cfg=None) -> None:
    """Start the helper process now, so its MLflow imports (and, for a sqlite store `cfg`, a store's first
    opening) overlap the caller's own start-up work."""
    from workbench.tracking.process import warm_up as start

    local = cfg is not None and cfg.tracking_uri.startswith("sqlite:///")
    start("mlflow", "workbench.tracking.mlflow_tracker", store=local)


def stop_idle_helper() -> None:
    """Stop the helper process if it runs no session (a `warm_up` that turned out not to be needed), so its
    imports do not compete with the sweep."""
    from workbench.tracking.process import stop_idle

    stop_idle()
