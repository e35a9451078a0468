"""`execution.backend: ray`: the sweep's cells run on Ray workers; the driver keeps everything else.

The driver (this process) owns the sweep record, resume and MLflow logging exactly as on a laptop: it is
`Execution` with two steps swapped. `prepare` builds a variant's dense index once, embedded by Ray Data
(`ray_index`) into the shared vector store; `compute` queues the cell, the queued cells go in batches to the
least busy `CellWorker` actors (`ray_cells`), and each row returned is persisted and logged as on a laptop.
A worker that dies is restarted by Ray and its calls retried (`max_restarts`, `max_task_retries`); a batch
whose worker cannot come back is sent to another one. A cell is written by the driver only when its row
arrives, so none is lost or written twice; a killed driver leaves the record it always leaves, and running
the spec again resumes it.

Ray is imported here only: `backend: local` never loads it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from workbench.data.evalset import EvalItem
from workbench.errors import ConfigError, WorkbenchError
from workbench.runner.budget import JudgeMeter
from workbench.runner.execution import Execution
from workbench.runner.ray_budget import SharedBudget
from workbench.runner.ray_cells import CellWorker, per_worker
from workbench.runner.ray_index import RayDataEmbedder
from workbench.runner.rate_gate import RateGate
from workbench.runner.workspace import needs_dense
from workbench.spec import ExecutionConfig, VariantConfig

MOVES = 5  # a cell is sent to another worker at most this often (its worker died for good each time)


def connect(execution: ExecutionConfig) -> Any:
    """ray, initialised: the cluster at `ray_address`, or a local Ray on this machine when it is None."""
    try:
        import ray
    except ImportError:
        raise ConfigError("execution.backend ray needs Ray: pip install 'rag-workbench[ray]' (or set backend: local)") from None
    if not ray.is_initialized():
        try:
            ray.init(address=execution.ray_address, logging_level="WARNING", log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # noqa: BLE001  (ray raises ConnectionError, RuntimeError or a bare Exception)
            where = ("cannot start a local Ray" if execution.ray_address is None
                     else f"cannot join a Ray cluster at {execution.ray_address!r}")
            raise ConfigError(f"execution.ray_address: {where} ({str(exc).splitlines()[0][:200]}); start one with "
                              "`ray start --head` and set ray_address, or set backend: local") from None
    return ray


class WorkerPool:
    """The sweep's `CellWorker` actors and its rate gate; `run` sends a cell to the least busy worker."""

    def __init__(self, ray: Any, run: RayExecution, ledger: Any = None):
        spec, inputs, ex = run.spec, run.inputs, run.spec.execution
        self.ray = ray
        urls = {provider: url for provider, url in run.env.base_urls.items()}
        endpoints = {str(run.model_for(v).base_url) for v in inputs.variants if v.model is not None}
        limited = ex.requests_per_minute or ex.tokens_per_minute
        self.gate = None
        if limited and endpoints:
            lease_s = ex.timeout_s * (ex.max_retries + 1) + 30  # a call cannot outlive this: its timeouts say so
            self.gate = ray.remote(RateGate).options(num_cpus=0, max_concurrency=100_000).remote(
                {key: (ex.requests_per_minute, ex.tokens_per_minute) for key in endpoints}, lease_s)
        self.gate_cpu0 = self.gate.cpu_s.remote() if self.gate is not None else None  # its start-up left out
        self.per_worker = per_worker(ex.concurrency, ex.workers)
        # kept referenced for the whole sweep: a restarted worker is constructed from them again
        self.data = corpus, evalset = ray.put(inputs.corpus), ray.put(inputs.evalset)
        actor = ray.remote(CellWorker).options(
            max_restarts=-1, max_task_retries=-1,
            # a worker's cells wait on its own semaphore, so it can take more than it calls at once
            max_concurrency=self.per_worker * 2 + 4, num_cpus=1)
        self.workers = [
            actor.remote(spec.model_dump(mode="json"), corpus, evalset, urls, run.results.sweep_id, run.retime,
                         self.gate, endpoints if self.gate else set(), ex.workers, ledger)
            for _ in range(ex.workers)]
        self.busy = [0] * len(self.workers)
        self.gone: set[int] = set()
        self.slots: asyncio.Semaphore | None = None  # made in the sweep's event loop
        self.pending: list[tuple[tuple, asyncio.Future]] = []  # cells queued for the next batch
        self.sending: set[asyncio.Task] = set()  # batches on their way (referenced: the loop keeps weak refs)
        self.moved = 0  # cells sent to another worker after theirs died for good

    async def run(self, variant_hash: str, position: int, rank: int, cancelled,
                  repeat: int | None = None) -> dict | None:
        """One cell's row, run on a worker with the other cells queued in the same turn of the event loop
        (one actor call per batch: a call per cell cost the driver and each worker ~1-2 ms of CPU a cell)."""
        loop = asyncio.get_running_loop()
        self.slots = self.slots or asyncio.Semaphore(len(self.workers) * (self.per_worker * 2 + 4))
        async with self.slots:
            if cancelled():
                return None  # cancelled while it waited for a slot: never sent
            future = loop.create_future()
            self.pending.append(((variant_hash, position, rank, repeat), future))
            if len(self.pending) == 1:
                loop.call_soon(self._dispatch)  # after every cell that gets its slot in this turn
            return await future

    def _dispatch(self) -> None:
        """The queued cells in batches of at most a worker's calls in flight, each to the least busy worker."""
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), self.per_worker):
            batch = pending[start:start + self.per_worker]
            self.sending.add(task := asyncio.get_running_loop().create_task(self._send(batch)))
            task.add_done_callback(self.sending.discard)

    async def _send(self, batch: list) -> None:
        from ray.exceptions import RayActorError

        cells, futures = [c for c, _ in batch], [f for _, f in batch]
        try:
            for _ in range(MOVES):
                alive = [i for i in range(len(self.workers)) if i not in self.gone]
                if not alive:
                    break
                i = min(alive, key=lambda w: self.busy[w])
                self.busy[i] += len(cells)
                try:
                    rows = await self.workers[i].run_cells.remote(cells)
                except RayActorError:
                    self.gone.add(i)  # restarts exhausted or its node gone: its cells go elsewhere
                    self.moved += len(cells)
                    continue
                finally:
                    self.busy[i] -= len(cells)
                for future, row in zip(futures, rows):
                    if not future.done():
                        future.set_result(row)
                return
            raise WorkbenchError(f"every Ray worker died ({len(self.workers)} started): the finished cells are "
                                 "saved; run the same spec again to resume once the cluster is back")
        except BaseException as exc:  # each cell's caller raises it, as a call per cell would have
            for future in futures:
                if not future.done():
                    future.cancel() if isinstance(exc, asyncio.CancelledError) else future.set_exception(exc)

    def counters(self) -> list[dict]:
        out = []
        for i, w in enumerate(self.workers):
            if i not in self.gone:
                try:
                    out.append(self.ray.get(w.counters.remote(), timeout=30))
                except Exception:  # a worker gone at the end: its cells are already with the driver
                    pass
        return out

    def gate_cpu_s(self) -> float:
        """The gate actor's CPU seconds since it started (0 without a gate)."""
        if self.gate is None:
            return 0.0
        try:
            return self.ray.get(self.gate.cpu_s.remote(), timeout=30) - self.ray.get(self.gate_cpu0, timeout=30)
        except Exception:  # a gate lost at the end: its figure is only a measurement
            return 0.0

    def close(self) -> None:
        for w in self.workers:
            try:
                self.ray.get(w.close.remote(), timeout=10)
            except Exception:
                pass
            self.ray.kill(w)
        if self.gate is not None:
            self.ray.kill(self.gate)


@dataclass(kw_only=True)
class RayExecution(Execution):
    """`Execution` with cells on Ray workers and dense indexes embedded by Ray Data."""

    scores_here = False  # the workers score (and import ragas); the driver never loads it for a plain sweep
    pool: WorkerPool | None = field(init=False, default=None)
    budget: SharedBudget | None = field(init=False, default=None)  # the guard, shared by workers and judge
    workers_seen: list[dict] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.ray = connect(self.spec.execution)  # here, on the caller's thread, not the sweep's event loop
        sessions = max(1, min(self.spec.execution.workers, int(self.ray.cluster_resources().get("CPU", 1))))
        self.ws.build_embedder = lambda cfg, home, share_cpu=False: RayDataEmbedder(cfg, home, sessions, share_cpu=share_cpu)
        self.position = {item.id: i for i, item in enumerate(self.inputs.evalset.items)}

    async def run(self) -> None:
        if self.guard is not None:
            self.budget = SharedBudget(self.ray, self.guard)
            for judge in self.judges() if self.judge is not None else ():
                judge.meter = JudgeMeter(self.budget.meter_guard(), judge.meter.model)  # built before first use
        self.pool = WorkerPool(self.ray, self, self.budget.ledger if self.budget else None)
        try:
            # every worker started (one that cannot start is found out by its first batch, as before)
            await asyncio.gather(*(w.ready.remote() for w in self.pool.workers), return_exceptions=True)
            await super().run()
        finally:
            self.workers_seen = self.pool.counters()
            gate_cpu_s = self.pool.gate_cpu_s()
            self.pool.close()
            if self.budget is not None:
                self.budget.close()  # its counts and stop reason into the driver's guard
            total = lambda k: sum(c.get(k, 0) for c in self.workers_seen)  # noqa: E731
            self.results.stats.update({"model_calls": total("model_calls"), "model_attempts": total("model_attempts"),
                                       "ray_workers": len(self.pool.workers), "ray_cells_moved": self.pool.moved,
                                       "ray_worker_pids": sorted({c["pid"] for c in self.workers_seen}),
                                       "ray_worker_cpu_s": total("cpu_s"), "ray_gate_cpu_s": gate_cpu_s,
                                       "ray_gate_round_trips": total("gate_round_trips")})

    async def prepare(self, variant: VariantConfig, todo: tuple[EvalItem, ...]) -> Any:
        if needs_dense(variant):
            await self.indexes.index_for(variant)  # built once, into the shared store, before any worker opens it
        return variant

    async def compute(self, variant: VariantConfig, item: EvalItem, rank: int,
                      repeat: int | None = None) -> dict[str, Any] | None:
        if self.hooks.cancelled():
            return None
        row = await self.pool.run(variant.hash, self.position[item.id], rank, self.hooks.cancelled, repeat)
        if row is None and self.budget is not None:
            await self.budget.check()  # never started on its worker: the ledger refused it, stop here too
        return row
