"""`run_sweep`: expand the space, build what each variant needs once, answer, score, log.

The steps live in their own modules: `inputs` (spec, data, hooks), `resume` (a finished sweep returned
as is, a killed one resumed), `environment` (local model, endpoint checks), `workspace` (shared indexes),
`execution` (the pipelined, bounded, cached model calls), `records` (every finished cell on disk at once).
MLflow is written by a helper process (`workbench.tracking.process`) that overlaps the sweep.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent import futures
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from workbench import collector
from workbench.analysis.results import SweepResults
from workbench.errors import WorkbenchError
from workbench.rag.cache import ResultCache
from workbench.rag.deadline import prepare_tls
from workbench.runner.accounting import Accounting
from workbench.runner.estimate import keep_observed
from workbench.runner.budget import BudgetGuard
from workbench.runner.environment import Environment
from workbench.runner.execution import Execution
from workbench.runner.generations import check_retime_count, retime_ids
from workbench.runner.inputs import Hooks, SweepInputs, with_overrides
from workbench.runner.loop_priority import responsive_loop
from workbench.runner.resume import Start, open_record, reuse_finished
from workbench.runner.workspace import Workspace
from workbench.scoring import catalogue
from workbench.spec import SweepSpec, load_spec
from workbench.sync import run_coroutine
from workbench.tracking import LoggedRun, Tracker, open_tracker, warm_up
from workbench.tracking.store import check_scheme


def run_sweep(
    spec: str | Path | dict | SweepSpec,
    *,
    tracking_uri: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    on_cell: Callable[[dict[str, Any]], None] | None = None,
    cancel: threading.Event | None = None,
    resume: bool = True,
    no_cache: bool = False,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    tracker: Tracker | None = None,
    remeasure_latency: int = 0,
    on_search: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResults:
    """Run every variant of `spec` over its eval set, score each answer and log to MLflow.

    on_cell: called with each finished row (the notebook's live table uses it).
    cancel: set this event to stop after the current cell; finished cells are kept and logged, the
      MLflow runs are marked KILLED, and the partial results are returned.
    resume: if an earlier run of this same spec was killed or cancelled, finish it (same sweep id and
      MLflow parent run; finished cells are not run again) instead of starting a new sweep; if it
      finished without failed cells on the same data and its MLflow runs are intact, return it as is.
      resume=False starts a new sweep (cached answers are still used).
    no_cache: neither read nor write cached generations (identical requests of this run still share one call)
      and never return a finished sweep.
    on_start: called once before the first cell with {sweep_id, total_cells, variants, local_server}.
    tracker: log to this Tracker instead of the spec's (MLflow in a helper process, or nothing when
      tracking.enabled is false); it is used even when tracking is disabled.
    remeasure_latency: re-time N questions per variant: their model call is made again past the generation
      cache (the new answer and timing are cached), the same N question ids for every variant, so the
      latency aggregates (computed from the cells timed in this sweep when there are any) compare like for
      like. A finished sweep is then never returned as is. 0: off. `results.latency_provenance()` says where
      each variant's latencies were measured; a mix of runs is noted in `results.notes` and warned about by
      `best` / `pareto` / `compare` on latency.
    on_search: a halving / optuna search calls it after each rung with `results.search` (strategy, rungs so
      far, per variant its rung, questions and why it stopped) and `last` (that rung's entered, stopped, survivors).

    >>> results = run_sweep("experiments/quickstart.yaml", limit=5)   # doctest: +SKIP
    >>> results.to_frame()[["label", "f1", "latency_total_p50_s"]]     # doctest: +SKIP
    """
    spec = with_overrides(load_spec(spec), tracking_uri, limit, no_cache)
    check_retime_count(remeasure_latency)
    catalogue.check_judge(spec)  # judge.metrics names catalogue metrics: checked before any work
    hooks = Hooks(progress=progress, on_cell=on_cell, on_start=on_start, cancel=cancel, on_search=on_search)
    started = time.perf_counter()
    prepare_tls()  # for the endpoint checks, made while the data loads
    if spec.tracking.enabled and tracker is None:
        check_scheme(spec.tracking.tracking_uri)  # a mistyped scheme fails before a local model starts
        warm_up(spec.tracking)  # the MLflow process imports its libraries while we load data and check endpoints
    inputs = SweepInputs.load(spec)
    if resume and not no_cache and not remeasure_latency:
        reused = reuse_finished(inputs, hooks, started, tracker)
        if reused is not None:
            return _note_latency(reused)
    guard = BudgetGuard.for_sweep(spec, inputs.variants, started)  # a price missing for max_usd fails here
    if guard is not None:  # the guard stops the sweep as a cancel would: through the cancel event
        hooks = dataclasses.replace(hooks, cancel=cancel if cancel is not None else threading.Event())
        guard.on_stop = hooks.cancel.set
    accounting = Accounting.before(inputs, guard)
    with ExitStack() as stack:
        env = Environment.open(spec, list(inputs.variants), stack)
        env.check_endpoints(list(inputs.variants), spec.judge)
        if spec.execution.backend == "ray":  # a wrong cluster address fails here, before anything is written
            from workbench.runner.ray_backend import connect

            connect(spec.execution)
        judge = None
        if spec.judge is not None:
            from workbench.scoring.judge import Judge

            judges = [Judge(spec.judge, base_url=env.base_urls.get(spec.judge.provider), cache_dir=inputs.home / "cache" / "judge",
                            execution=spec.execution, judge_pass=j,
                            meter=guard.meter(spec.judge) if guard is not None else None)  # the judge counts too
                      for j in range(spec.repeats.judge)]
            for one in judges:
                stack.callback(one.close)  # its client, event loop and cache
            judge = judges[0] if len(judges) == 1 else judges
        # a bad tracking URI fails here, before any write
        log = tracker if tracker is not None else open_tracker(spec.tracking, spec.experiment_name)
        # Every check passed: only now is anything written (sweep record, MLflow runs).
        start = open_record(inputs, resume)
        retime = retime_ids((item.id for item in inputs.evalset.items), remeasure_latency)
        # What is loaded by now (libraries, corpus, eval set, clients) lives on: out of the collector's reach, a
        # full collection walks only newer objects instead of stalling the event loop 100-500 ms with calls
        # waiting. Not given back after the sweep: that costs one full pass over the whole heap (~0.4 s) at the
        # next collection; what stays frozen is freed by reference counting, only cycles among it are kept.
        collector.loaded()  # and the collector `workbench run` paused for its start-up resumes
        with responsive_loop():  # the event loop takes the GIL back within 1 ms (`runner.loop_priority`)
            return _note_latency(_execute(inputs, hooks, env, judge, log, start, started, stack, retime, accounting))


def _execute(inputs: SweepInputs, hooks: Hooks, env: Environment, judge: Any, log: Tracker, start: Start,
             started: float, stack: ExitStack, retime: frozenset[str] = frozenset(),
             accounting: Accounting | None = None) -> SweepResults:
    from tqdm.auto import tqdm

    spec, variants, record = inputs.spec, inputs.variants, start.record
    results = SweepResults(spec=spec, sweep_id=start.sweep_id, variants=list(variants), notes=inputs.notes(),
                           data_info=inputs.data_info)
    ws = Workspace(home=inputs.home, corpus=inputs.corpus, share_cpu=spec.stage == "generate",
                   vector_store=spec.vector_store)
    started_sweep = log.start_sweep(spec, start.sweep_id, len(variants), inputs.data_info, start.parent_run_id)
    started_sweep.add_done_callback(lambda f: _note_parent_run(f, record, results))
    children: dict[str, LoggedRun] = {}
    if start.done:
        try:
            children = started_sweep.result().children  # resuming needs the runs already logged
        except WorkbenchError as exc:
            raise (log.close() or exc) from None  # the first failure says what went wrong
        results.notes.append(f"resumed sweep {start.sweep_id}: {len(start.done)} finished cells kept, only missing cells run")
    if hooks.on_start:
        hooks.on_start({"sweep_id": start.sweep_id, "total_cells": inputs.total_cells, "variants": list(variants),
                        "local_server": env.server})
    bar = tqdm(total=inputs.total_cells, desc=spec.name, unit="cell", disable=not hooks.progress)
    cache = ResultCache(inputs.home / "cache" / "generations", enabled=spec.execution.cache)
    stack.callback(cache.close)
    guard = accounting.guard if accounting is not None else None
    if guard is not None:
        guard.resume_from(start.done)  # max_calls and max_usd count the whole sweep
    if accounting is not None:  # each variant's estimate sample rendered when it finishes, never at the exit
        hooks = _sample_when_finished(hooks, accounting, inputs, ws, start)
        stack.callback(accounting.close)
    status, ran = "FAILED", False
    run: Execution | None = None
    try:
        with record.cells_path.open("a", encoding="utf-8") as cells:
            backend = Execution
            if spec.execution.backend == "ray":
                from workbench.runner.ray_backend import RayExecution as backend  # Ray only when asked for
            run = backend(inputs=inputs, hooks=hooks, env=env, ws=ws, tracker=log, judge=judge, cache=cache,
                          results=results, cells=cells, bar=bar, eval_rows=inputs.eval_rows(),
                          done=start.done, children=children, retime=retime, guard=guard)
            if (generations := getattr(run, "generations", None)) is not None:
                ws.lend_spare_core(generations.no_calls_out)
            run_coroutine(run.run(), thread_name="workbench-sweep")
        status, ran = ("KILLED" if hooks.cancelled() else "FINISHED"), True
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        bar.close()
        order = {v.hash: i for i, v in enumerate(variants)}
        results.rows.sort(key=lambda r: order[r["variant_hash"]])  # stable: dataset order kept
        if run is not None and run.last_logged is not None:
            futures.wait([run.last_logged])  # the wall a user waits for: until every answer is logged
        results.wall_s = time.perf_counter() - started
        results.stats.update({"index_builds": ws.index_builds, "index_reused": ws.index_reused,
                              "generation_cache_hits": cache.hits})
        metrics = {"wall_s": results.wall_s, "variants_done": float(len({r["variant_hash"] for r in results.rows}))}
        if ran and accounting is not None:
            metrics.update(_side_by_side(accounting, inputs, ws, results, start))
        stop = guard.stopped if guard is not None else None
        tags = {"workbench.stopped_by": "budget", "workbench.stop_reason": stop} if stop else (
            {"workbench.stopped_by": None, "workbench.stop_reason": None} if start.done else None)
        if stop:
            results.stats["stopped_by"] = "budget"
            results.notes.append(f"stopped by budget: {stop}; the answered cells are kept and logged, run again with a "
                                 "larger budget to go on (nothing already answered is asked again)")
        log.finish_sweep(status, metrics, tags)
        error = log.close()
        failed = sum(1 for r in results.rows if r.get("error"))
        if error is not None and status == "FINISHED":
            status = "FAILED"  # the cells are on disk: running the same spec again finishes the logging
        record.write_status(status=status, failed_cells=failed, run_ids=dict(results.run_ids),
                            parent_run_id=results.parent_run_id, stopped_by="budget" if stop else None, stop_reason=stop)
        keep_observed(record.directory, variants, results.rows)  # the next run's estimate reads it, not the record
        if error is not None and not isinstance(error, KeyboardInterrupt):
            raise error
    results.status = status
    if retime:
        results.notes.append(f"re-timed {len(retime)} question(s) per variant past the generation cache "
                             f"(remeasure_latency): latency aggregates use the cells timed in this sweep")
    return results


def _sample_when_finished(hooks: Hooks, accounting: Accounting, inputs: SweepInputs, ws: Workspace,
                          start: Start) -> Hooks:
    """`hooks` whose on_cell also counts each variant's cells and, at its last, has its estimate sample rendered."""
    from workbench.runner.routed_cells import items_for

    items, repeats = inputs.evalset.items, inputs.spec.repeats.generation
    left = {v.hash: len(items_for(v, items)) * repeats for v in inputs.variants}
    for row in start.done:
        left[row["variant_hash"]] = left.get(row["variant_hash"], 0) - 1
    user = hooks.on_cell

    def on_cell(row: dict[str, Any]) -> None:
        key = row["variant_hash"]
        left[key] = left.get(key, 0) - 1
        if left[key] == 0:
            accounting.sample_finished(inputs, ws, key)
        if user is not None:
            user(row)

    return dataclasses.replace(hooks, on_cell=on_cell)


def _side_by_side(accounting: Accounting, inputs: SweepInputs, ws: Workspace, results: SweepResults,
                  start: Start) -> dict[str, float]:
    """estimate.* beside actual.* for the parent run; an estimate that cannot be made costs a note, not the sweep."""
    earlier = {(r["variant_hash"], r["question_id"]) for r in start.done}
    try:
        return accounting.metrics(inputs, ws, results.rows, earlier, results.stats.get("model_calls", 0), results.wall_s)
    except Exception as exc:  # noqa: BLE001 - the sweep's results matter more than its estimate
        results.notes.append(f"estimate vs actual not logged: {type(exc).__name__}: {exc}")
        return {}


def _note_latency(results: SweepResults) -> SweepResults:
    """The latency warning among the notes (the CLI prints them after the summary) when the variants'
    latency figures mix runs."""
    mixed = results.latency_warning()
    if mixed:
        results.notes.append(mixed)
    return results


def _note_parent_run(future, record, results) -> None:
    """The parent run exists: note it in the sweep record at once (a kill -9 then resumes into it)."""
    if future.exception() is None:
        results.parent_run_id = future.result().parent_run_id
        record.write_status(parent_run_id=results.parent_run_id)
