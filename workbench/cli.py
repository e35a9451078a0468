"""`workbench` command line: a thin face over the Python API (no logic of its own)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(
    help="RAG experimentation workbench: run sweeps of RAG variants and log them to MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def friendly_errors(fn: Callable) -> Callable:
    """Our errors print as one clear message and exit 2; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from workbench.errors import WorkbenchError

        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.secho("interrupted: finished cells are kept in the sweep's cells.jsonl", err=True)
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main() -> None:
    """RAG experimentation workbench."""


@app.command()
@friendly_errors
def run(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML), e.g. experiments/quickstart.yaml"),
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: the spec's, sqlite:///mlruns/mlflow.db)"
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N eval questions"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar"),
) -> None:
    """Run every variant of SPEC over its eval set, score the answers and log each variant to MLflow."""
    import pandas as pd

    from workbench.sweep import run_sweep

    results = run_sweep(spec, tracking_uri=tracking_uri, limit=limit, progress=progress)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        typer.echo(results.summary().round(3).to_string())
    for note in results.notes:
        typer.echo(f"note: {note}")
    typer.echo(
        f"sweep {results.sweep_id}: {len(results.variants)} variants in {results.wall_s:.1f} s; "
        f"MLflow parent run {results.parent_run_id} at {results.spec.tracking.tracking_uri}"
    )
    if results.spec.tracking.tracking_uri.startswith("sqlite:///"):
        typer.echo(f"open it with: mlflow ui --backend-store-uri {results.spec.tracking.tracking_uri}")


if __name__ == "__main__":  # pragma: no cover
    app()
