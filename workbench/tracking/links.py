"""Where to see a logged run in the MLflow UI: a link into the tracking server, or, for a local store
(no server), the `mlflow ui` command to start one and the address it will serve the run at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# `mlflow ui` serves on 127.0.0.1:5000 unless told otherwise; the command names both, so the URL is exact.
UI_HOST, UI_PORT = "127.0.0.1", 5000


@dataclass(frozen=True)
class RunLink:
    run_id: str
    url: str | None  # the run's page; None when its experiment could not be read
    command: str | None = None  # for a local store: what serves `url`

    @property
    def served(self) -> bool:
        """True when `url` is on a running tracking server (nothing to start)."""
        return self.command is None


def _absolute_store(tracking_uri: str) -> str:
    """A relative sqlite path made absolute, so the command works from any directory."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not tracking_uri.startswith(prefix + "/"):
        return prefix + str(Path(tracking_uri[len(prefix):]).resolve())
    return tracking_uri


def ui_command(tracking_uri: str) -> str:
    """The command that serves a local store's runs at http://UI_HOST:UI_PORT/."""
    return f"mlflow ui --backend-store-uri {_absolute_store(tracking_uri)} --host {UI_HOST} --port {UI_PORT}"


def run_link(tracking_uri: str, run_id: str) -> RunLink:
    """The run's page `<server>/#/experiments/<experiment id>/runs/<run id>`."""
    try:
        import mlflow

        experiment_id = mlflow.MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    except Exception:  # the link is a convenience; the run id alone still finds the run
        return RunLink(run_id, None)
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return RunLink(run_id, f"{tracking_uri.rstrip('/')}/{path}")
    return RunLink(run_id, f"http://{UI_HOST}:{UI_PORT}/{path}", ui_command(tracking_uri))
