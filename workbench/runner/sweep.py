"""The sweep runner: expand the space, build what each variant needs once, answer, score, log.

Reuse: chunk lists and Chroma collections are shared by every variant with the same (corpus, chunking,
embedding); retrieval results by every variant that also shares the retrieval config; embeddings are
cached by text hash on disk. An identical re-run of a finished sweep returns that sweep.

Pipelining: each question goes retrieve -> generate on its own, so the first answers are being generated
while dense indexes are still being built (BM25 variants need none and go first). Model calls are
admitted variant by variant, so variants finish one after another and each is logged while the next
runs. Each finished cell is appended to `<home>/sweeps/<sweep id>/cells.jsonl` the moment it finishes;
MLflow is written by a helper process (`workbench.tracking.process`) that overlaps the sweep.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from workbench.rag.chunking import chunk_corpus
from workbench.spec import SweepSpec, VariantConfig, content_hash, load_spec
from workbench.data.loaders import Corpus, EvalItem, EvalSet, load_corpus, load_eval
from workbench.rag.embeddings import make_embedder
from workbench.errors import ModelError, WorkbenchError
from workbench.scoring import catalogue
from workbench.scoring.cell import Cell
from workbench.scoring.score import missing_inputs, score_cell
from workbench.rag.cache import ResultCache
from workbench.rag.executor import Cancelled, Executor
from workbench.rag.chat import ChatModel, cost_usd
from workbench.rag.pipeline import RAGPipeline, render_messages
from workbench.runner.records import create_record, find_finished, find_resumable
from workbench.analysis.results import SweepResults
from workbench.scoring.aggregate import aggregate
from workbench.rag.retrieval import ChunkIndex, chroma_client, index_key
from workbench.tracking.mlflow_tracker import make_tracker
from workbench.tracking.process import open_session, outer_run_id, warm_up


def needs_dense(variant: VariantConfig) -> bool:
    return variant.retrieval.kind in ("dense", "hybrid")


@dataclass
class Workspace:
    """Per-sweep reuse of embedders, indexes and retrieval results, keyed by content (thread-safe)."""

    home: Path
    corpus: Corpus
    memo: dict[tuple[str, str, str], tuple[list, float]] = field(default_factory=dict)
    share_cpu: bool = False  # indexes are built while model calls run: leave them a core

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = chroma_client(self.home / "chroma")
        self._embedders: dict[str, Any] = {}
        self._indexes: dict[str, ChunkIndex] = {}
        self._dense_opened: set[str] = set()
        self.index_builds = 0  # Chroma collections built (embedding the chunks) by this sweep
        self.index_reused = 0  # complete collections found and reused

    def embedder(self, variant: VariantConfig):
        key = variant.embedding.vector_key
        if key not in self._embedders:
            self._embedders[key] = make_embedder(
                variant.embedding, cache_dir=self.home / "cache" / "embeddings", share_cpu=self.share_cpu
            )
        return self._embedders[key]

    def index(self, variant: VariantConfig) -> ChunkIndex:
        """The variant's chunk index (chunked once per key); its dense collection is opened separately."""
        key = index_key(self.corpus.digest, variant.chunking, variant.embedding)
        with self._lock:
            if key not in self._indexes:
                chunks = chunk_corpus(self.corpus, variant.chunking)
                self._indexes[key] = ChunkIndex(key, chunks, self.embedder(variant), self.client, dense=False)
            return self._indexes[key]

    def open_dense(self, variant: VariantConfig) -> ChunkIndex:
        """Open or build the variant's Chroma collection, once per sweep."""
        from filelock import FileLock

        index = self.index(variant)
        (self.home / "locks").mkdir(parents=True, exist_ok=True)
        # Another sweep on the same home may be building this very collection: build it once.
        with FileLock(str(self.home / "locks" / f"{index.key}.lock")):
            index.ensure_dense()
        with self._lock:
            if index.key not in self._dense_opened:
                self._dense_opened.add(index.key)
                self.index_builds += int(index.built)
                self.index_reused += int(not index.built)
        return index

    def retrieve(self, pipe: RAGPipeline, item: EvalItem) -> tuple[list, float]:
        key = (pipe.index.key, content_hash(pipe.variant.retrieval.model_dump(mode="json")), item.id)
        if key not in self.memo:
            self.memo[key] = pipe.retrieve(item.question)
        return self.memo[key]

    def retrieve_batch(self, pipe: RAGPipeline, items: tuple[EvalItem, ...]) -> None:
        """Retrieval-only sweeps: one batched search; each question is charged the mean latency."""
        rkey = content_hash(pipe.variant.retrieval.model_dump(mode="json"))
        todo = [i for i in items if (pipe.index.key, rkey, i.id) not in self.memo]
        if not todo:
            return
        start = time.perf_counter()
        hits = pipe.index.search([i.question for i in todo], pipe.variant.retrieval)
        each = (time.perf_counter() - start) / len(todo)
        for item, h in zip(todo, hits):
            self.memo[(pipe.index.key, rkey, item.id)] = (h, each)


def new_sweep_id(spec: SweepSpec, home: Path | None = None) -> str:
    """<UTC time>-<spec hash>; a second sweep of the same spec in the same second gets a suffix."""
    base = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{spec.hash[:6]}"
    if home is None:
        return base
    sweep_id, n = base, 1
    while (home / "sweeps" / sweep_id).exists():
        n += 1
        sweep_id = f"{base}-{n}"
    return sweep_id


def _eval_frame(evalset: EvalSet) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": i.id,
                "question": i.question,
                "reference_answers": list(i.reference_answers),
                "relevant_ids": list(i.relevant_ids),
            }
            for i in evalset.items
        ]
    )


def _with_overrides(spec: SweepSpec, tracking_uri: str | None, limit: int | None) -> SweepSpec:
    if tracking_uri:
        spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"tracking_uri": tracking_uri})})
    if limit is not None:
        if limit < 1:
            raise WorkbenchError(f"--limit must be at least 1, got {limit}")
        data = spec.data.model_copy(update={"eval": spec.data.eval.model_copy(update={"limit": limit})})
        spec = spec.model_copy(update={"data": data})
    return spec


def _notes(spec: SweepSpec, evalset: EvalSet, variants: list[VariantConfig]) -> list[str]:
    """Which metrics cannot be computed for this eval set, and why (they are left out, never 0)."""
    available = {"contexts"}
    if evalset.has_references:
        available.add("reference_answers")
    if evalset.has_relevance:
        available.add("relevant_ids")
    notes = []
    if spec.stage == "generate":
        notes += [f"{name} not computed: {why}" for name, why in missing_inputs(available, include_retrieval=False).items()]
    if "relevant_ids" not in available:
        notes.append("retrieval metrics not computed: the eval set has no relevant_ids")
    if spec.stage == "generate" and spec.judge is None:
        notes.append("LLM-judged metrics off: no judge configured (add a `judge:` section to the spec)")
    kmax = min(v.retrieval.k for v in variants)
    deep = [c for c in spec.retrieval_cutoffs if c > kmax]
    if deep:
        notes.append(f"cut-offs {deep} exceed the smallest k ({kmax}): those metrics only see the k retrieved chunks")
    return notes


def _score_cell(spec: SweepSpec, variant: VariantConfig, item: EvalItem, row: dict[str, Any]) -> None:
    """Add the document ranking, retrieval and answer scores to a row (the catalogue's metrics); a
    metric whose inputs are missing is left out, never 0."""
    relevance = dict(item.relevance) if item.relevance else {d: 1 for d in item.relevant_ids}
    scored = score_cell(Cell.from_row(row), relevance, variant.retrieval.k, spec.retrieval_cutoffs,
                        answers=not variant.retrieval_only)
    row.update(scored.to_row())  # only adds keys: the row keeps its order


def _check_endpoints(variants: list[VariantConfig], base_urls: dict[str, str | None]) -> None:
    """Fail fast, before any work, on a missing key, an unreachable base_url or an unknown model."""
    seen: set[str] = set()
    for v in variants:
        m = v.model
        if m is None:
            continue
        key = content_hash([m.provider, m.base_url, m.model, m.api_key_env])
        if key in seen:
            continue
        seen.add(key)
        ChatModel(m, base_url=base_urls.get(m.provider), max_retries=1).check()


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
) -> SweepResults:
    """Run every variant of `spec` over its eval set, score each answer and log to MLflow.

    on_cell: called with each finished row (the notebook's live table uses it).
    cancel: set this event to stop after the current cell; finished cells are kept and logged, the
      MLflow runs are marked KILLED, and the partial results are returned.
    resume: if an earlier run of this same spec was killed or cancelled, finish it (same sweep id and
      MLflow parent run; finished cells are not run again) instead of starting a new sweep; if it
      finished without failed cells on the same data and its MLflow runs are intact, return it as is.
      resume=False starts a new sweep (cached answers are still used).
    no_cache: ignore cached generations (they are still written) and never return a finished sweep.
    on_start: called once before the first cell with {sweep_id, total_cells, variants, local_server}.

    >>> results = run_sweep("experiments/quickstart.yaml", limit=5)   # doctest: +SKIP
    >>> results.to_frame()[["label", "f1", "latency_total_p50_s"]]     # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    spec = _with_overrides(load_spec(spec), tracking_uri, limit)
    catalogue.check_judge(spec)  # judge.metrics names catalogue metrics: checked before any work
    if no_cache:
        spec = spec.model_copy(update={"execution": spec.execution.model_copy(update={"cache": False})})
    started = time.perf_counter()
    if spec.tracking.enabled:
        warm_up()  # the MLflow process imports its libraries while we load data and check endpoints
    corpus = load_corpus(spec.data.corpus)
    evalset = load_eval(spec.data.eval, corpus)
    variants = spec.variants()
    home = Path(spec.home)
    data_info = {
        "data.corpus.digest": corpus.digest,
        "data.corpus.documents": len(corpus),
        "data.eval.digest": evalset.digest,
        "data.eval.questions": len(evalset),
    }

    if resume and not no_cache:
        reused = _reuse_finished(spec, home, data_info, evalset, variants, started, progress, on_cell, on_start)
        if reused is not None:
            return reused

    eval_frame = _eval_frame(evalset)
    with ExitStack() as stack:
        base_urls: dict[str, str | None] = {}
        server = None
        needs_local = any(v.model is not None and v.model.provider == "local" for v in variants)
        if needs_local or (spec.judge is not None and spec.judge.provider == "local"):
            from workbench.rag.local_model import LocalModelServer

            server = stack.enter_context(LocalModelServer(log_dir=home / "logs"))
            base_urls["local"] = server.base_url
        _check_endpoints(variants, base_urls)
        judge = None
        if spec.judge is not None:
            from workbench.scoring.judge import Judge

            judge = Judge(spec.judge, base_url=base_urls.get(spec.judge.provider), cache_dir=home / "cache" / "judge",
                          execution=spec.execution)
            stack.callback(judge.close)  # its client, event loop and cache

        make_tracker(spec.tracking, spec.experiment_name)  # a bad tracking URI fails here, before any write
        # Every check passed: only now is anything written (sweep record, MLflow runs).
        record = find_resumable(home, spec, data_info) if resume else None
        done: list[dict[str, Any]] = []
        if record is not None:  # a killed or cancelled run of this same spec: finish it instead
            record.repair()
            sweep_id, done = record.sweep_id, record.cells()
            resume_run_id = record.status().get("parent_run_id")
            record.write_status(status="RUNNING", pid=os.getpid())
        else:
            sweep_id, resume_run_id = new_sweep_id(spec, home), None
            record = create_record(home, sweep_id, spec, data_info)
        cells_path = record.cells_path

        results = SweepResults(spec=spec, sweep_id=sweep_id, variants=list(variants), notes=_notes(spec, evalset, variants))
        results.data_info = data_info
        ws = Workspace(home=home, corpus=corpus, share_cpu=spec.stage == "generate")
        log = open_session(spec.tracking, spec.experiment_name)
        started_sweep = log.submit(
            "start_sweep", spec, sweep_id, len(variants), data_info, resume_run_id, outer_run_id()
        )
        started_sweep.add_done_callback(lambda f: _note_parent_run(f, record, results))
        children: dict[str, tuple[str, str]] = {}
        if done:
            try:
                children = started_sweep.result()[1]  # resuming needs the runs already logged
            except WorkbenchError:
                log.close()
                raise log.error from None  # the first failure says what went wrong
            results.notes.append(f"resumed sweep {sweep_id}: {len(done)} finished cells kept, only missing cells run")
        if on_start:
            on_start({"sweep_id": sweep_id, "total_cells": len(variants) * len(evalset), "variants": list(variants),
                      "local_server": server})
        bar = tqdm(total=len(variants) * len(evalset), desc=spec.name, unit="cell", disable=not progress)
        cache = ResultCache(home / "cache" / "generations", enabled=spec.execution.cache)
        stack.callback(cache.close)
        status = "FAILED"
        try:
            with cells_path.open("a", encoding="utf-8") as cells:
                run = _SweepRun(spec, ws, evalset, log, judge, base_urls, cache, eval_frame, results,
                                cells, bar, on_cell, cancel, done, children, server)
                _run_coroutine(run.run(variants))
            status = "KILLED" if cancel is not None and cancel.is_set() else "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            bar.close()
            order = {v.hash: i for i, v in enumerate(variants)}
            results.rows.sort(key=lambda r: order[r["variant_hash"]])  # stable: dataset order kept
            results.wall_s = time.perf_counter() - started
            results.stats.update({"index_builds": ws.index_builds, "index_reused": ws.index_reused,
                                  "generation_cache_hits": cache.hits})
            log.submit("end_sweep", status,
                       {"wall_s": results.wall_s, "variants_done": float(len({r["variant_hash"] for r in results.rows}))})
            error = log.close()
            failed = sum(1 for r in results.rows if r.get("error"))
            if error is not None and status == "FINISHED":
                status = "FAILED"  # the cells are on disk: running the same spec again finishes the logging
            record.write_status(status=status, failed_cells=failed, run_ids=dict(results.run_ids),
                                parent_run_id=results.parent_run_id)
            if error is not None and not isinstance(error, KeyboardInterrupt):
                raise error
    results.status = status
    return results


def _note_parent_run(future, record, results) -> None:
    """The parent run exists: note it in the sweep record at once (a kill -9 then resumes into it)."""
    if future.exception() is None:
        results.parent_run_id = future.result()[0]
        record.write_status(parent_run_id=results.parent_run_id)



def _reuse_finished(spec, home, data_info, evalset, variants, started, progress, on_cell, on_start) -> SweepResults | None:
    """An identical re-run: the finished sweep of this same spec on the same data, if nothing in it failed
    and its MLflow runs are still there. Nothing is run or logged again."""
    record = find_finished(home, spec, data_info)
    if record is None:
        return None
    st = record.status()
    rows = record.cells()
    hashes = {v.hash for v in variants}
    if len(rows) != len(variants) * len(evalset) or {r["variant_hash"] for r in rows} != hashes:
        return None
    if any(r.get("error") for r in rows):
        return None
    run_ids = st.get("run_ids") or {}
    if spec.tracking.enabled:
        if set(run_ids) != hashes:
            return None
        session = open_session(spec.tracking, spec.experiment_name)
        intact = session.submit("runs_intact", record.sweep_id, st.get("parent_run_id"), list(run_ids.values()))
        error = session.close()
        if error is not None:
            raise error
        if not intact.result():
            return None
    order = {v.hash: i for i, v in enumerate(variants)}
    position = {item.id: i for i, item in enumerate(evalset.items)}
    rows.sort(key=lambda r: (order[r["variant_hash"]], position.get(r["question_id"], 0)))
    results = SweepResults(spec=spec, sweep_id=record.sweep_id, variants=list(variants), rows=rows,
                           run_ids=dict(run_ids), parent_run_id=st.get("parent_run_id"), data_info=dict(data_info))
    results.notes = _notes(spec, evalset, variants) + [
        f"identical to finished sweep {record.sweep_id}: its {len(rows)} cells and MLflow runs are returned as they "
        "are, nothing was run again (resume=False / --no-resume starts a new sweep; no_cache / --no-cache calls the models again)"
    ]
    if on_start:
        on_start({"sweep_id": record.sweep_id, "total_cells": len(rows), "variants": list(variants),
                  "local_server": None})
    if on_cell:
        for row in rows:
            on_cell(row)
    if progress:
        from tqdm.auto import tqdm

        tqdm(total=len(rows), initial=len(rows), desc=spec.name, unit="cell").close()
    results.status = "FINISHED"
    results.wall_s = time.perf_counter() - started
    results.stats.update({"index_builds": 0, "index_reused": 0, "generation_cache_hits": 0, "model_calls": 0,
                          "reused_cells": len(rows)})
    return results


def _run_coroutine(coro) -> Any:
    """asyncio.run, also from inside a running loop (a Jupyter kernel): then in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="workbench-sweep", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


@dataclass
class _SweepRun:
    """One sweep's async execution: every question pipelined retrieve -> generate, model calls bounded
    per endpoint and admitted variant by variant; MLflow written in order by the logging process."""

    spec: SweepSpec
    ws: Workspace
    evalset: EvalSet
    log: Any  # a TrackingSession (MLflow calls, in order, in the logging process) or a NullSession
    judge: Any
    base_urls: dict[str, str | None]
    cache: ResultCache
    eval_frame: pd.DataFrame
    results: SweepResults
    cells: Any
    bar: Any
    on_cell: Callable[[dict[str, Any]], None] | None
    cancel: threading.Event | None
    done: list[dict[str, Any]] = field(default_factory=list)  # cells finished by an earlier, killed run
    children: dict[str, tuple[str, str]] = field(default_factory=dict)  # its child runs: hash -> (id, status)
    server: Any = None  # the LocalModelServer, if this sweep started one
    server_restarts: int = 0

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    async def run(self, variants: list[VariantConfig]) -> None:
        self.executor = Executor(self.spec.execution, self.cache, self.cancel)
        # Retrieval on one thread (in submission order), chunking and index builds on another, so BM25
        # questions are answered while a dense index is still being embedded.
        self.retrieval_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-retrieve")
        self.index_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-index")
        self.chunked: dict[str, asyncio.Future] = {}
        self.dense: dict[str, asyncio.Future] = {}
        self.logging: set[str] = set()  # variants whose MLflow run has been started
        # Variants that need no dense index go first; variants sharing an index run back to back.
        schedule = sorted(variants, key=lambda v: (needs_dense(v), index_key(self.ws.corpus.digest, v.chunking, v.embedding)))
        rank = {v.hash: i for i, v in enumerate(schedule)}
        try:
            done = await asyncio.gather(*(self.run_variant(v, rank[v.hash]) for v in schedule))
            if self.judge is not None:
                # Judging after all generation: a judge sharing an endpoint must not queue in front of
                # (and inflate the measured latency of) the answers being timed.
                for variant, rows in done:
                    if rows and variant.hash in self.logging and not self.cancelled():
                        await self.judge_rows(rows)
                        self.finish_variant(variant, rows)
        finally:
            self.retrieval_pool.shutdown(wait=True)
            self.index_pool.shutdown(wait=True)
            for model in getattr(self, "_models", {}).values():
                await model.aclose()
            self.results.stats.update({"model_calls": self.executor.calls, "model_attempts": self.executor.attempts})

    def model_for(self, variant: VariantConfig) -> ChatModel | None:
        if variant.model is None:
            return None
        self._models = getattr(self, "_models", {})
        key = content_hash([variant.model.model_dump(mode="json"), self.base_urls.get(variant.model.provider)])
        if key not in self._models:
            ex = self.spec.execution
            self._models[key] = ChatModel(
                variant.model,
                base_url=self.base_urls.get(variant.model.provider),
                timeout=ex.timeout_s,
                max_retries=ex.max_retries,
                max_connections=max(ex.concurrency, ex.local_concurrency) * 2,
            )
        return self._models[key]

    async def in_thread(self, pool: ThreadPoolExecutor, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def index_for(self, variant: VariantConfig) -> ChunkIndex:
        """The variant's index; for dense and hybrid retrieval, once its Chroma collection is ready.

        Chunking and dense builds share the index thread, in the order variants ask (BM25 ones first), so
        the first BM25 variant's chunks are ready before anything is embedded; retrieval never waits behind them.
        """
        key = index_key(self.ws.corpus.digest, variant.chunking, variant.embedding)
        if key not in self.chunked:
            self.chunked[key] = asyncio.ensure_future(self.in_thread(self.index_pool, self.ws.index, variant))
        if not needs_dense(variant):
            return await self.chunked[key]
        if key not in self.dense:
            await self.chunked[key]
            if key not in self.dense:
                self.dense[key] = asyncio.ensure_future(self.in_thread(self.index_pool, self.ws.open_dense, variant))
        return await self.dense[key]

    async def run_variant(self, variant: VariantConfig, rank: int) -> tuple[VariantConfig, list[dict]]:
        items = self.evalset.items
        earlier = {r["question_id"]: r for r in self.done if r["variant_hash"] == variant.hash}
        slots: list[dict | None] = [earlier.get(item.id) for item in items]
        logged = self.children.get(variant.hash)
        if all(slots) and logged is not None and logged[1] in ("FINISHED", "FAILED"):
            rows = [r for r in slots if r is not None]
            self.results.rows.extend(rows)
            self.results.run_ids[variant.hash] = logged[0]
            self.bar.update(len(rows))
            return variant, rows  # finished and logged before the kill: nothing to do
        if logged is not None:
            self.log.submit("discard_run", logged[0])  # a partial run is re-logged whole
        for i, row in enumerate(slots):
            if row is not None:
                self.bar.update(1)
                self.log_cell(variant, i, row)
        todo = tuple(item for item, r in zip(items, slots) if r is None)
        if todo and not self.cancelled():
            index = await self.index_for(variant)
            pipe = RAGPipeline(variant, index, self.model_for(variant))
            if variant.retrieval_only:
                await self.in_thread(self.retrieval_pool, self.ws.retrieve_batch, pipe, todo)

            async def cell(i: int, item: EvalItem) -> None:
                if slots[i] is not None or self.cancelled():
                    return
                hits, retrieve_s = await self.in_thread(self.retrieval_pool, self.ws.retrieve, pipe, item)
                if self.cancelled():
                    return
                try:
                    row = await self.answer(pipe, item, hits, retrieve_s, rank)
                except Cancelled:
                    return  # never started: not a result, not a failure
                _score_cell(self.spec, variant, item, row)
                slots[i] = row
                self.finish(row)
                self.log_cell(variant, i, row)

            await asyncio.gather(*(cell(i, item) for i, item in enumerate(items)))
        rows = [r for r in slots if r is not None]
        self.results.rows.extend(rows)
        if rows and self.judge is None:
            self.finish_variant(variant, rows)
        return variant, rows

    async def answer(self, pipe: RAGPipeline, item: EvalItem, hits: list, retrieve_s: float, rank: int = 0) -> dict[str, Any]:
        variant = pipe.variant
        cell = Cell(
            variant_hash=variant.hash,
            variant=variant.short_hash,
            question_id=item.id,
            question=item.question,
            reference_answers=list(item.reference_answers),
            relevant_ids=list(item.relevant_ids),
            retrieved_chunk_ids=[h.chunk.id for h in hits],
            retrieved_chunk_doc_ids=[h.chunk.doc_id for h in hits],
            contexts=[h.chunk.text for h in hits],
            started_at_ns=time.time_ns() - int(retrieve_s * 1e9),
            latency_retrieve_s=retrieve_s,
            latency_total_s=retrieve_s,
            error=None,
        )
        if variant.prompt is None or pipe.model is None:
            return cell.to_row()  # retrieval only
        messages = render_messages(variant.prompt, item.question, cell.contexts)
        cell = cell.replace(messages=messages)
        try:
            for attempt in range(2):  # the second attempt only after the local server was restarted
                try:
                    gen, cached = await self.executor.generate(pipe.model, messages, priority=rank)
                    break
                except ModelError:
                    if not await self.revive_local_server(variant) or attempt == 1:
                        raise
        except ModelError as exc:  # this cell failed; it is recorded, never scored as 0
            return cell.replace(answer=None, error=str(exc), latency_total_s=None).to_row()
        return cell.replace(
            answer=gen.text,
            cached=cached,
            latency_generate_s=gen.latency_s,
            latency_total_s=retrieve_s + gen.latency_s,
            tokens_prompt=gen.prompt_tokens,
            tokens_completion=gen.completion_tokens,
            cost_usd=cost_usd(variant.model, gen.prompt_tokens, gen.completion_tokens),
        ).to_row()

    async def revive_local_server(self, variant: VariantConfig) -> bool:
        """The local server died mid-sweep: restart it once (same port); if it dies again, report it."""
        if self.server is None or variant.model is None or variant.model.provider != "local":
            return False
        self._restart_lock = getattr(self, "_restart_lock", None) or asyncio.Lock()
        async with self._restart_lock:
            for _ in range(20):  # a killed process can look alive for a moment before it is reaped
                if not self.server.alive():
                    break
                await asyncio.sleep(0.1)
            else:
                return True  # alive and well: another cell already restarted it
            if self.server_restarts >= 1:
                try:
                    self.server.check()
                except ModelError as exc:
                    raise ModelError(f"the local model server died again after a restart: {exc}") from None
                return False
            died = f"the local model server died mid-sweep (log {self.server.log_path}); restarted it once"
            await asyncio.to_thread(self.server.restart)
            self.server_restarts += 1
            self.results.notes.append(died)
            if self.server.base_url != self.base_urls.get("local"):
                raise ModelError(f"{died}, but it came back at {self.server.base_url} instead of {self.base_urls.get('local')}")
            return True

    def finish(self, row: dict[str, Any]) -> None:
        """Persist the cell the moment it finishes, then report it."""
        self.cells.write(json.dumps(row, default=str) + "\n")
        self.cells.flush()
        if self.on_cell:
            self.on_cell(row)
        ex = self.executor
        self.bar.set_postfix_str(f"calls={ex.calls} cached={ex.cache_hits} {ex.rate():.1f} calls/s", refresh=False)
        self.bar.update(1)

    async def judge_rows(self, rows: list[dict]) -> None:
        """LLM-judged scores for a variant's rows, judged concurrently; a failed judgement is None with its
        reason in `<metric>_error`, never 0. Each judged row is written as it comes (last write wins)."""

        def judged(i: int, cell: Cell) -> None:
            rows[i].update(cell.to_row())  # only adds the judged keys (or updates them when resuming)
            self.cells.write(json.dumps(rows[i], default=str) + "\n")

        await self.judge.score_cells([Cell.from_row(r) for r in rows], on_cell=judged, stop=self.cancelled)
        self.cells.flush()

    def log_cell(self, variant: VariantConfig, i: int, row: dict[str, Any]) -> None:
        """The variant's run is created with its first cell; the first N questions get a trace."""
        if variant.hash not in self.logging:
            self.logging.add(variant.hash)
            self.log.submit("start_variant", variant, self.eval_frame)
        if i < self.spec.tracking.max_traces_per_variant:
            self.log.submit("log_trace", variant, row)

    def finish_variant(self, variant: VariantConfig, rows: list[dict]) -> None:
        """Metrics and table from the logging process; `run_ids` is filled in when it is done."""
        status = "KILLED" if len(rows) < len(self.evalset) else None
        done = self.log.submit("finish_variant", variant.hash, rows, aggregate(rows), status)

        def note(future) -> None:
            if future.exception() is None and future.result():
                self.results.run_ids[variant.hash] = future.result()

        done.add_done_callback(note)
