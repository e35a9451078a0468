"""What an exported variant leaves in MLflow: its prompt in the registry, the export file on its run, and
where to look at that run. The hand-over and the UI call these; they never import MLflow themselves."""

from __future__ import annotations

from pathlib import Path


def register_prompt(tracking_uri: str, name: str, template: str, commit_message: str, tags: dict[str, str]) -> dict:
    """Prompt `name` (an MLflow `{{slot}}` template) in the registry; returns {name, version, uri}.

    Its latest version is reused when it holds the same template: exporting the same winner again (or another
    variant with the same prompt) adds no identical version. That version keeps its first commit message and tags.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    latest = mlflow.MlflowClient(tracking_uri).load_prompt(f"prompts:/{name}@latest", allow_missing=True, cache_ttl_seconds=0)
    if latest is not None and latest.template == template:
        version = latest
    else:
        version = mlflow.genai.register_prompt(name=name, template=template, commit_message=commit_message, tags=tags)
    return {"name": name, "version": int(version.version), "uri": f"prompts:/{name}/{version.version}"}


def log_export(tracking_uri: str, run_id: str, path: str | Path) -> None:
    """The export file under the run's `export/` artifacts, and the run tagged `workbench.exported`."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    client.log_artifact(run_id, str(path), artifact_path="export")
    client.set_tag(run_id, "workbench.exported", "true")
