"""A Ray worker's side of a sweep: the same per-cell pipeline as the laptop (`Execution.compute`: retrieve →
answer → score), with its own event loop, executor, workspace and generation cache.

Workers never write the sweep record or MLflow: they take cells in batches (`run_cells`) and return the
finished rows to the driver (`runner.ray_backend`), which persists and logs them. Model calls are admitted
twice: by this worker's share of the concurrency cap (ceil(concurrency / workers) in flight, so the sum over
workers never exceeds it) and, when the spec sets a rate limit, by the cluster's one `RateGate` actor
(leases in batches: `ray_leases`).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workbench.analysis.results import SweepResults
from workbench.data.corpus import Corpus
from workbench.data.evalset import EvalSet
from workbench.rag.cache import ResultCache
from workbench.rag.chat import ChatModel
from workbench.rag.executor import EndpointLimits, Executor
from workbench.runner.environment import Environment
from workbench.runner.execution import Execution
from workbench.runner.generations import TimedGenerations
from workbench.runner.inputs import Hooks, SweepInputs
from workbench.runner.ray_budget import WorkerGuard
from workbench.runner.ray_leases import LeaseStock
from workbench.runner.workspace import IndexQueue, Workspace
from workbench.scoring.metrics import preload_in_background
from workbench.spec import SweepSpec
from workbench.tracking.null import NullTracker

_lease: contextvars.ContextVar[int | None] = contextvars.ContextVar("workbench_gate_lease", default=None)


def per_worker(concurrency: int, workers: int) -> int:
    """Each worker's share of the cluster-wide cap (at least 1; the shares sum to at most `concurrency`
    when workers <= concurrency)."""
    return max(1, concurrency // workers)


class ClusterLimits(EndpointLimits):
    """This worker's semaphore, then the cluster's gate (requests and tokens per minute) through the worker's
    batched `LeaseStock`."""

    def __init__(self, concurrency: int, stock: LeaseStock | None):
        super().__init__(concurrency, None, None)
        self.stock = stock

    async def acquire(self, tokens: int, priority: int = 0) -> None:
        await self.semaphore.acquire(priority)
        try:
            if self.stock is not None:
                # acquire and release run in one task (Executor.generate): the lease rides in its context
                _lease.set(await self.stock.take(tokens))
        except BaseException:
            self.semaphore.release()
            raise
        self.admitted += 1

    def release(self) -> None:
        lease = _lease.get()
        if self.stock is not None and lease is not None:
            _lease.set(None)
            self.stock.give(lease)  # reported with the next ask (or a moment later)
        self.semaphore.release()


class ClusterExecutor(Executor):
    """The laptop's executor with cluster limits per endpoint."""

    def __init__(self, execution, gate: Any, gated: set[str], guard: Any = None, prefetch: int = 0):
        super().__init__(execution, None, guard)
        self.gate, self.gated, self.prefetch = gate, gated, prefetch
        self.stocks: dict[str, LeaseStock] = {}

    def _limits_for(self, model: ChatModel) -> EndpointLimits:
        key = str(model.base_url)
        if key not in self._limits:
            n = self.execution.local_concurrency if model.cfg.provider == "local" else self.execution.concurrency
            if key in self.gated:
                self.stocks[key] = LeaseStock(self.gate, key, min(self.prefetch, n))
            self._limits[key] = ClusterLimits(n, self.stocks.get(key))
        return self._limits[key]


class CellWorker:
    """One Ray actor (`ray.remote(CellWorker)` in `ray_backend`); `run_cell` runs one (variant, question)."""

    def __init__(self, spec_json: dict, corpus: Corpus, evalset: EvalSet, base_urls: dict, sweep_id: str,
                 retime: frozenset[str], gate: Any, gated: set[str], workers: int, ledger: Any = None):
        spec = SweepSpec.model_validate(spec_json)
        ex = spec.execution
        # leases kept in stock are interchangeable only when no token limit sizes them per call
        self.prefetch = 0 if ex.tokens_per_minute else per_worker(ex.concurrency, workers)
        # This worker's share of the cap; the rates are the gate's, not a per-worker copy of them.
        mine = ex.model_copy(update={"concurrency": per_worker(ex.concurrency, workers),
                                     "requests_per_minute": None, "tokens_per_minute": None})
        self.spec = spec = spec.model_copy(update={"execution": mine})
        self.inputs = SweepInputs(spec, corpus, evalset, tuple(spec.variants()))
        self.variants = {v.hash: v for v in self.inputs.variants}
        self.base_urls, self.sweep_id, self.retime = base_urls, sweep_id, retime
        self.gate, self.gated = gate, gated
        self.ledger = ledger  # the sweep's budget (runner.ray_budget), None when it has none
        self.run: Execution | None = None
        self.pipes: dict[str, Any] = {}
        self.cells_run = 0
        self.cpu0: float | None = None  # this process's CPU seconds at its first cell (start-up imports left out)
        # ragas imported on a thread from the start, as the laptop does: on the event loop it would hold every
        # call in flight (and their measured latency) for seconds at the first score
        self.scorers = (preload_in_background() if any(not v.retrieval_only for v in self.inputs.variants)
                        else None)

    def _execution(self) -> Execution:
        """Built inside the actor's event loop (the executor binds to it)."""
        if self.run is None:
            home = self.inputs.home
            cache = ResultCache(home / "cache" / "generations", enabled=self.spec.execution.cache)
            run = Execution(
                inputs=self.inputs, hooks=Hooks(progress=False), env=Environment(base_urls=dict(self.base_urls)),
                ws=Workspace(home=home, corpus=self.inputs.corpus, vector_store=self.spec.vector_store),
                tracker=NullTracker(), judge=None, cache=cache,
                results=SweepResults(spec=self.spec, sweep_id=self.sweep_id, variants=list(self.inputs.variants)),
                cells=io.StringIO(), bar=None, eval_rows=None, retime=self.retime)
            guard = WorkerGuard(self.ledger) if self.ledger is not None else None
            run.executor = ClusterExecutor(self.spec.execution, self.gate, self.gated, guard, self.prefetch)
            run.generations = TimedGenerations(run.executor, cache, self.sweep_id, self.spec.execution)
            run.retrieval_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-retrieve")
            run.indexes = IndexQueue(run.ws)
            run.scorers_ready = asyncio.wrap_future(self.scorers) if self.scorers is not None else None
            self.run = run
        return self.run

    async def run_cell(self, variant_hash: str, position: int, rank: int,
                       repeat: int | None = None) -> dict[str, Any] | None:
        """The finished, scored row (None if it never started)."""
        if self.cpu0 is None:
            self.cpu0 = time.process_time()
        run = self._execution()
        variant = self.variants[variant_hash]
        if variant_hash not in self.pipes:  # a task: a batch's cells of one variant share one prepare
            self.pipes[variant_hash] = asyncio.ensure_future(run.prepare(variant, ()))
        preparing = self.pipes[variant_hash]
        try:
            pipe = await preparing
        except BaseException:
            if self.pipes.get(variant_hash) is preparing:
                del self.pipes[variant_hash]  # failed: the next cell tries again, as before
            raise
        row = await run.compute(pipe, self.inputs.evalset.items[position], rank, repeat)
        self.cells_run += 1
        return row

    async def ready(self) -> None:
        """Returns once this worker has started, its scorers imported: ragas' import (seconds of CPU) then
        neither competes with the first cells nor counts in the CPU per cell."""
        if self.scorers is not None:
            try:
                await asyncio.wrap_future(self.scorers)
            except Exception:  # noqa: BLE001 - the first score raises it, as on a laptop
                pass

    async def run_cells(self, cells: list[tuple[str, int, int, int | None]]) -> list[dict[str, Any] | None]:
        """A batch of `run_cell`s, run concurrently and returned together (one actor call for the batch)."""
        return list(await asyncio.gather(*(self.run_cell(*cell) for cell in cells)))

    async def counters(self) -> dict[str, Any]:
        """What this worker did since it (re)started: the driver sums them into the sweep's stats."""
        import ray

        run = self.run
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "cells_run": self.cells_run,
                "model_calls": run.executor.calls if run else 0, "model_attempts": run.executor.attempts if run else 0,
                "cache_hits": run.generations.cache_hits if run else 0,
                "gate_round_trips": sum(s.round_trips for s in run.executor.stocks.values()) if run else 0,
                "cpu_s": time.process_time() - self.cpu0 if self.cpu0 is not None else 0.0}

    async def close(self) -> None:
        if self.run is not None:
            for stock in self.run.executor.stocks.values():
                stock.close()
            self.run.retrieval_pool.shutdown(wait=False)
            self.run.indexes.close()
            for model in self.run.models.values():
                await model.aclose()
            self.run.cache.close()
