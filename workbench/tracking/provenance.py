"""Where a run comes from: who ran it, on which host, from which commit and workbench version, and which
script, command or notebook started it (MLflow's Source column)."""

from __future__ import annotations

import functools
import getpass
import os
import platform
import subprocess
import sys
from pathlib import Path

from workbench._version import __version__


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _audit_tags() -> tuple[tuple[str, str], ...]:
    tags = {"workbench.version": __version__, "workbench.user": getpass.getuser(), "workbench.host": platform.node()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tuple(tags.items())


def audit_tags() -> dict[str, str]:
    """Who ran it, where, from which commit and workbench version (computed once per process)."""
    return dict(_audit_tags())


def run_source() -> dict[str, str]:
    """Where this process was started from, as MLflow's Source column shows it: the notebook (JupyterLab
    puts its path in JPY_SESSION_NAME), the command (`workbench run spec.yaml`, `pytest …`) or the script.
    Computed in the user's process: the helper that logs would name itself."""
    if notebook := os.environ.get("JPY_SESSION_NAME"):
        return {"mlflow.source.name": notebook, "mlflow.source.type": "NOTEBOOK", "mlflow.user": getpass.getuser()}
    argv = sys.argv or [""]
    script = argv[0] if argv[0].endswith(".py") else " ".join([Path(argv[0]).name or "python", *argv[1:]])
    return {"mlflow.source.name": script[:500], "mlflow.source.type": "LOCAL", "mlflow.user": getpass.getuser()}


def set_tags(client, run_id: str, tags: dict[str, str | None]) -> None:
    """Set a run's tags; a None value removes a tag the run has (a stopped sweep that was resumed and finished)."""
    present = client.get_run(run_id).data.tags if any(v is None for v in tags.values()) else {}
    for name, value in tags.items():
        if value is not None:
            client.set_tag(run_id, name, value)
        elif name in present:
            client.delete_tag(run_id, name)
