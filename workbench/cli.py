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
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for cached generations"),
    resume: bool = typer.Option(
        True, "--resume/--no-resume",
        help="Finish an earlier killed/cancelled run of this same spec, or return it if it already finished "
        "(default); --no-resume starts a new sweep (cached answers are still used)",
    ),
    remeasure_latency: int = typer.Option(
        0, "--remeasure-latency", min=0,
        help="Re-time N questions per variant (the same N for every variant): call the model again past the "
        "generation cache, so latencies compare like for like when other answers are cached",
    ),
) -> None:
    """Run every variant of SPEC over its eval set, score the answers and log each variant to MLflow."""
    import pandas as pd

    from workbench.runner.sweep import run_sweep
    from workbench.spec import load_spec
    from workbench.tracking.store import sqlite_path

    loaded = load_spec(spec)
    store = sqlite_path(tracking_uri or loaded.tracking.tracking_uri) if loaded.tracking.enabled else None
    new_store = store is not None and not store.exists()
    results = run_sweep(loaded, tracking_uri=tracking_uri, limit=limit, progress=progress, no_cache=no_cache, resume=resume,
                        remeasure_latency=remeasure_latency)
    if new_store and store.exists():  # a mistyped --tracking-uri should not go unnoticed
        typer.echo(f"note: created a new MLflow store at {store.resolve()} (there was none)")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        typer.echo(results.summary().round(3).to_string())
    for note in results.notes:
        typer.echo(f"note: {note}")
    st = results.stats
    if st.get("reused_cells"):
        typer.echo(f"returned the finished sweep as it is: {st['reused_cells']} cells, no model calls, nothing logged "
                   "(--no-resume starts a new sweep; --no-cache calls the models again)")
    else:
        typer.echo(
            f"model calls {st.get('model_calls', 0)}, cached generations {st.get('generation_cache_hits', 0)}, "
            f"indexes built {st.get('index_builds', 0)} / reused {st.get('index_reused', 0)}"
        )
    typer.echo(
        f"sweep {results.sweep_id}: {len(results.variants)} variants in {results.wall_s:.1f} s; "
        f"MLflow parent run {results.parent_run_id} at {results.spec.tracking.tracking_uri}"
    )
    if results.spec.tracking.tracking_uri.startswith("sqlite:///"):
        typer.echo(f"open it with: mlflow ui --backend-store-uri {results.spec.tracking.tracking_uri}")
    failed = [r for r in results.rows if r.get("error")]
    if failed:
        typer.secho(
            f"{len(failed)} of {len(results.rows)} cells failed (recorded, not scored); first: {failed[0]['error']}",
            fg=typer.colors.YELLOW, err=True,
        )
        raise typer.Exit(1)


@app.command()
@friendly_errors
def export(
    sweep_id: str = typer.Option(..., "--sweep-id", help="The sweep to export from (printed by `workbench run`)"),
    out: Path = typer.Option(..., "--out", help="Where to write the YAML"),
    variant: Optional[str] = typer.Option(None, "--variant", help="Variant hash (or unique prefix) to export"),
    best: Optional[str] = typer.Option(None, "--best", help="Export the best variant by this metric, e.g. f1"),
    constraint: list[str] = typer.Option([], "--constraint", help="With --best: METRIC<=VALUE (repeatable)"),
    minimize: bool = typer.Option(False, "--minimize", help="With --best: lower is better (default: the metric's own direction)"),
    tracking_uri: str = typer.Option("sqlite:///mlruns/mlflow.db", "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Export one variant of a logged sweep as a production YAML with provenance."""
    from workbench.errors import ConfigError
    from workbench.analysis.load import load_sweep
    from workbench.handover.export import check_out_path
    from workbench.spec import check_sweep_id

    if (variant is None) == (best is None):
        raise ConfigError("give exactly one of --variant HASH or --best METRIC")
    check_sweep_id(sweep_id)
    check_out_path(out)  # before the sweep is read, a prompt registered or a byte written
    results = load_sweep(sweep_id, tracking_uri)
    if best is not None:
        from workbench.analysis.stats import parse_constraints

        import warnings

        from workbench.analysis.provenance import LatencyProvenanceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LatencyProvenanceWarning)  # printed below as one line
            decision = results.best(best, parse_constraints(constraint, "--constraint"), maximize=False if minimize else None)
        typer.echo(f"best: {decision.winner} — {decision.reason}")
        for warning in decision.warnings:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        variant = decision.winner
    try:
        chosen = results.variant(variant)
    except KeyError as exc:
        raise ConfigError(f"--variant: {exc.args[0]}") from None
    path = results.export(chosen.hash, out)
    typer.echo(f"exported variant {chosen.short_hash} ({chosen.label()}) to {path}")


@app.command()
@friendly_errors
def answer(
    path: Path = typer.Argument(..., help="An export YAML written by `workbench export`"),
    question: str = typer.Argument(..., help="The question to answer"),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="The corpus, if it moved since the export"),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON"),
) -> None:
    """Answer QUESTION with an exported pipeline (same pipeline and answers as in the sweep)."""
    import json

    from workbench.errors import ConfigError
    from workbench.handover.export import load_pipeline

    if not question.strip():  # before the index is built or the model started
        raise ConfigError(f"QUESTION: {question!r} is empty; ask a question in words, e.g. \"Who won Super Bowl 50?\"")
    with load_pipeline(path, corpus_path=corpus) as pipe:
        result = pipe.answer(question)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    typer.echo(result.answer)
    for c in result.contexts:
        typer.echo(f"  [{c.rank}] {c.doc_id} (score {c.score:.3f})")
    typer.echo(
        f"  latency {result.latency['total_s']:.2f} s, tokens {result.prompt_tokens}+{result.completion_tokens}"
    )


@app.command()
@friendly_errors
def synth(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML): its corpus, first chunking, embedding and model"),
    n: Optional[int] = typer.Option(None, "--n", help="Questions wanted (default: the spec's synth.n, else 100)"),
    out: Path = typer.Option(..., "--out", help="The eval JSONL to write (never overwritten); a .report.json beside it"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the chunk sample and the model (default 1)"),
    answerability: Optional[bool] = typer.Option(None, "--answerability/--no-answerability",
                                                 help="Also check the model can answer from the chunk alone"),
) -> None:
    """Grow an eval set: questions grounded in SPEC's own chunks, filtered, with provenance."""
    from workbench.runner.synth import synthesize

    result = synthesize(spec, n=n, out=out, seed=seed, answerability=answerability)
    for line in result.report.lines():
        typer.echo(line)
    typer.echo(f"wrote {len(result.rows)} questions to {result.path} (report: {result.report_path})")


if __name__ == "__main__":  # pragma: no cover
    app()
