"""`workbench` command line: a thin face over the Python API (no logic of its own)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional


def _start_the_mlflow_helper_early() -> None:
    """`workbench run`: start the MLflow helper process before this module imports typer and pydantic (~0.3 s),
    so MLflow's own import (seconds, in that process) overlaps them and the first answer shows in MLflow that
    much sooner. Only the program itself (not a test importing this module); a spec with tracking off stops it."""
    program = Path(sys.argv[0]).name in ("workbench", "cli.py")
    if program and sys.argv[1:2] == ["run"] and not {"-h", "--help"} & set(sys.argv):
        from workbench import collector
        from workbench.tracking import warm_up

        collector.pause()  # until the sweep has loaded what it needs (`run_sweep`)
        warm_up()


_start_the_mlflow_helper_early()

import typer  # noqa: E402 - after the helper has started

BUDGET_EXIT = 3  # `workbench run` stopped by its budget: the answered cells are kept, a larger budget goes on

class _Command(typer.Typer):
    """The `workbench` program: a finished command exits without the interpreter's 1-3 s teardown. Only the
    program's entry calls this (CliRunner runs the click command directly, so tests keep their process)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as done:
            from workbench.quick_exit import exit_now

            exit_now(done.code)


app = _Command(
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
    no_cache: bool = typer.Option(False, "--no-cache", help="Call the models even for cached generations "
                                  "(identical requests of this run still share one call)"),
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
    max_usd: Optional[float] = typer.Option(None, "--max-usd", help="Budget: USD the sweep may spend (over the spec's budget)"),
    max_calls: Optional[int] = typer.Option(None, "--max-calls", help="Budget: model calls the sweep may make"),
    max_wall_s: Optional[float] = typer.Option(None, "--max-wall-s", help="Budget: seconds this run may take"),
) -> None:
    """Run every variant of SPEC over its eval set, score the answers and log each variant to MLflow.

    Exits 0 when every cell was answered, 1 when some failed, 3 when the budget stopped the sweep (run it
    again with a larger budget to go on)."""
    from workbench.rag.lean_imports import import_for_the_command_line
    from workbench.spec import load_spec
    from workbench.tracking import stop_idle_helper, warm_up

    import_for_the_command_line()
    loaded = load_spec(spec)
    if loaded.tracking.enabled:
        warm_up(loaded.tracking)  # the MLflow helper imports and opens a store now, while this process imports the runner
    else:
        stop_idle_helper()  # started early for nothing
    from workbench.runner.budget import with_budget
    from workbench.runner.sweep import run_sweep
    from workbench.tracking.store import sqlite_path

    loaded = with_budget(loaded, max_usd, max_calls, max_wall_s, "--max-usd/--max-calls/--max-wall-s")
    store = sqlite_path(tracking_uri or loaded.tracking.tracking_uri) if loaded.tracking.enabled else None
    new_store = store is not None and not store.exists()
    results = run_sweep(loaded, tracking_uri=tracking_uri, limit=limit, progress=progress, no_cache=no_cache, resume=resume,
                        remeasure_latency=remeasure_latency)
    if new_store and store.exists():  # a mistyped --tracking-uri should not go unnoticed
        typer.echo(f"note: created a new MLflow store at {store.resolve()} (there was none)")
    typer.echo(results.summary_text())
    for note in results.notes:
        typer.echo(f"note: {note}")
    st = results.stats
    if st.get("reused_cells"):
        typer.echo(f"returned the finished sweep as it is: {st['reused_cells']} cells, no model calls, nothing logged "
                   "(--no-resume starts a new sweep; --no-cache calls the models again)")
    else:
        typer.echo(
            f"model calls {st.get('model_calls', 0)}, cached generations {st.get('generation_cache_hits', 0)}, "
            f"identical requests merged {st.get('merged_requests', 0)}, "
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
    if results.stats.get("stopped_by") == "budget":
        raise typer.Exit(BUDGET_EXIT)
    if failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def estimate(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (for scripts and CI gates)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N eval questions"),
    sample: int = typer.Option(8, "--sample", help="Questions rendered and counted per prompt (seeded sample)"),
    latency: Optional[float] = typer.Option(None, "--latency", help="Seconds per model call (default: measured by "
                                            "--probe, else what earlier sweeps measured)"),
    probe: int = typer.Option(0, "--probe", min=0, help="Make N real calls per model to measure latency (billed)"),
) -> None:
    """Estimate SPEC before running it: calls, tokens, USD and wall time, each low / expected / high."""
    import json

    from workbench.runner.estimate import estimate as estimate_spec

    result = estimate_spec(spec, limit=limit, sample=sample, latency_s=latency, probe=probe)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.text())


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
    if result.answered_by:  # a routed variant: which model answered, and whether the cascade escalated
        typer.echo(f"  answered by {result.answered_by}" + (" (escalated)" if result.routing.get("escalated") else ""))


@app.command()
@friendly_errors
def serve(
    path: Path = typer.Argument(..., help="An export YAML written by `workbench export`"),
    port: int = typer.Option(8080, "--port"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; anything but loopback should set a token"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Where traces go (default: the export's store)"),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="The MLflow experiment of this deployment"),
    token_env: str = typer.Option("WORKBENCH_SERVE_TOKEN", "--token-env", help="Env var holding the bearer token (unset: no token)"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Serve the model from this OpenAI-compatible URL instead"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Model requests in flight (remote endpoints)"),
    home: Path = typer.Option(Path(".workbench"), "--home", help="Index and embedding cache folder"),
    redact: bool = typer.Option(True, "--redact/--no-redact", help="PII out of traces and feedback"),
    answer_cache: int = typer.Option(0, "--answer-cache", help="Keep the last N answers and reuse them for the same question (0: off)"),
) -> None:
    """Serve an exported winner over HTTP (OpenAI-compatible chat, /answer, /feedback, /metrics), traced to MLflow."""
    from workbench.handover.serve.run import serve as run_service

    run_service(path, host=host, port=port, token_env=token_env, tracking_uri=tracking_uri, deployment=deployment,
                home=home, base_url=base_url, concurrency=concurrency, redact=redact, answer_cache=answer_cache)


@app.command()
@friendly_errors
def harvest(
    deployment: str = typer.Option(..., "--deployment", help="The deployment (MLflow experiment) to read"),
    out: Path = typer.Option(..., "--out", help="The eval JSONL to write, e.g. new_eval.jsonl"),
    tracking_uri: str = typer.Option("sqlite:///mlruns/mlflow.db", "--tracking-uri", help="The store it traces to"),
) -> None:
    """Production questions (deduplicated, PII-redacted) as an eval set; corrections become references."""
    from workbench.handover.serve.harvest import harvest as run_harvest

    h = run_harvest(deployment, out, tracking_uri=tracking_uri)
    typer.echo(f"{h.questions} questions from {h.traces} requests to {h.path} ({h.corrected} with corrected "
               f"references, {h.candidates} with candidate references); provenance in {h.provenance_path}")


@app.command()
@friendly_errors
def plan(
    sweep_id: str = typer.Option(..., "--sweep-id", help="A logged sweep whose variance to plan from"),
    metric: str = typer.Option("f1", "--metric", help="The per-question metric to compare on"),
    delta: float = typer.Option(..., "--delta", help="The true difference to detect, in the metric's units, e.g. 0.05"),
    a: Optional[str] = typer.Option(None, "--a", help="Variant hash (or prefix); default: the top on the metric"),
    b: Optional[str] = typer.Option(None, "--b", help="Variant hash (or prefix); default: the runner-up"),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the paired test"),
    power: float = typer.Option(0.8, "--power", help="The chance of detecting delta to plan for"),
    tracking_uri: str = typer.Option("sqlite:///mlruns/mlflow.db", "--tracking-uri", help="MLflow tracking URI"),
) -> None:
    """Questions (and repeats) needed to tell two variants apart by DELTA, from a sweep's paired variance."""
    from workbench.analysis.load import load_sweep
    from workbench.spec import check_sweep_id

    check_sweep_id(sweep_id)
    typer.echo(load_sweep(sweep_id, tracking_uri).power(metric, delta, a, b, alpha=alpha, target=power).statement())


@app.command()
@friendly_errors
def gate(
    spec: Path = typer.Argument(..., help="The candidate's sweep spec (one variant)"),
    baseline: Path = typer.Option(..., "--baseline", help="The baseline: an export written by `workbench export`"),
    metric: str = typer.Option("f1", "--metric", help="The per-question metric to compare on"),
    max_drop: float = typer.Option(0.0, "--max-drop", help="The drop allowed, in the metric's units, e.g. 0.02"),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the one-sided paired test"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N eval questions"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the spec's)"),
) -> None:
    """Exit 1 only when the candidate is significantly worse than the baseline by more than --max-drop."""
    from workbench.runner.gate import run_gate

    decision = run_gate(spec, baseline, metric, max_drop, alpha=alpha, tracking_uri=tracking_uri, limit=limit)
    typer.echo(decision.line)
    if not decision.passed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def synth(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML): its corpus, first chunking, embedding and model"),
    n: Optional[int] = typer.Option(None, "--n", help="Questions wanted (default: the spec's synth.n, else 100)"),
    out: Path = typer.Option(..., "--out", help="The eval JSONL to write (never overwritten); a .report.json beside it"),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds the chunk sample and the model (default 1)"),
    answerability: Optional[bool] = typer.Option(None, "--answerability/--no-answerability",
                                                 help="Also check the model can answer from the chunk alone"),
    generator: Optional[str] = typer.Option(None, "--generator", help="workbench (default; works with the local "
                                            "model) or ragas (ragas' TestsetGenerator; needs a remote model)"),
) -> None:
    """Grow an eval set: questions grounded in SPEC's own chunks, filtered, with provenance."""
    from workbench.runner.synth import synthesize

    result = synthesize(spec, n=n, out=out, seed=seed, answerability=answerability, generator=generator)
    for line in result.report.lines():
        typer.echo(line)
    typer.echo(f"wrote {len(result.rows)} questions to {result.path} (report: {result.report_path})")


if __name__ == "__main__":  # pragma: no cover
    app()
