"""One sweep's async execution: every question goes retrieve -> generate on its own, model calls are
bounded per endpoint and admitted variant by variant (so variants finish one after another and each is
logged while the next runs), each finished cell is persisted at once and handed to the tracker."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable, Sequence
from typing import IO, Any, ClassVar

from workbench.analysis.results import SweepResults
from workbench.data.evalset import EvalItem
from workbench.errors import ModelError
from workbench.events import point, span
from workbench.rag.cache import ResultCache
from workbench.rag.assemble import build_pipeline, chat_model
from workbench.rag.chat import ChatModel
from workbench.rag.executor import Cancelled, Executor
from workbench.rag.pipeline import RAGPipeline
from workbench.rag.retrieval import index_key
from workbench.runner.environment import Environment
from workbench.runner.generations import Peek, TimedGenerations, now_iso, retrieve_and_peek
from workbench.runner.inputs import Hooks, SweepInputs
from workbench.runner.loop_priority import after_first_answer, responsive_loop
from workbench.runner.progress import CallRate
from workbench.runner.records import repeat_of
from workbench.runner.routed_cells import RoutedCells, items_for
from workbench.runner.workspace import IndexQueue, Workspace, needs_dense
from workbench.scoring import catalogue
from workbench.scoring.cell import Cell
from workbench.scoring.score import score_cell
from workbench.scoring.variance import PASSES_SUFFIX
from workbench.spec import SweepSpec, VariantConfig, content_hash
from workbench.spec_repeats import for_repeat
from workbench.spec_routing import RoutedModel, chat_configs
from workbench.tracking import LoggedRun, Tracker


@dataclass(kw_only=True)
class Execution:
    """Runs the variants' missing cells; `results` collects the rows, `tracker` gets them in order."""

    inputs: SweepInputs
    hooks: Hooks
    env: Environment
    ws: Workspace
    tracker: Tracker  # MLflow calls, in order, in the logging process (or a NullTracker)
    judge: Any
    cache: ResultCache
    results: SweepResults
    cells: IO[str]  # the sweep record's cells.jsonl, open for appending
    bar: Any  # tqdm
    eval_rows: list[dict] | None  # the eval set, logged as each run's evaluation dataset
    done: list[dict[str, Any]] = field(default_factory=list)  # cells finished by an earlier, killed run
    children: dict[str, LoggedRun] = field(default_factory=dict)  # its runs already logged, by variant hash
    retime: frozenset[str] = frozenset()  # question ids whose model call is made again past the cache
    guard: Any = None  # a runner.budget.BudgetGuard the executor consults before each call
    # set up by run()
    executor: Executor = field(init=False)
    generations: TimedGenerations = field(init=False)
    call_rate: CallRate = field(init=False, default_factory=CallRate)
    retrieval_pool: ThreadPoolExecutor = field(init=False)
    indexes: IndexQueue = field(init=False)
    models: dict[str, ChatModel] = field(init=False, default_factory=dict)
    routed: RoutedCells = field(init=False)  # routers, cascades and response caches (spec_routing)
    scorers_ready: asyncio.Future | None = field(init=False, default=None)  # ragas imported off the loop
    prices_ready: asyncio.Future | None = field(init=False, default=None)  # genai-prices loaded off the loop
    logging: set[str] = field(init=False, default_factory=set)  # variants whose tracked run has been started
    last_logged: Future | None = field(init=False, default=None)  # done: every answer handed over so far is logged
    logged_cells: set[tuple[str, str, int]] = field(init=False, default_factory=set)  # a search asks a variant again
    known: dict[str, dict[tuple[str, int], dict]] = field(init=False, default_factory=dict)  # [variant][(q, repeat)]
    scores_here: ClassVar[bool] = True  # False: another backend scores its cells elsewhere (runner.ray_backend)

    @property
    def spec(self) -> SweepSpec:
        return self.inputs.spec

    async def run(self) -> None:
        with responsive_loop():  # threads beside the loop hand it the GIL within 1 ms, not 5
            await self._run()

    async def _run(self) -> None:  # the cache is read and written by `generations` (latency provenance)
        self.executor = Executor(self.spec.execution, self.hooks.cancel, self.guard)
        self.generations = TimedGenerations(self.executor, self.cache, self.results.sweep_id, self.spec.execution)
        self.routed = RoutedCells(self.env.base_urls, self.spec.execution, self.generations, self.results.sweep_id,
                                  self.judge)
        # Retrieval on one thread (in submission order), chunking and index builds on another.
        self.retrieval_pool = ThreadPoolExecutor(1, thread_name_prefix="workbench-retrieve")
        # Variants that need no dense index go first; variants sharing an index run back to back.
        schedule = sorted(self.inputs.variants,
                          key=lambda v: (needs_dense(v), index_key(self.ws.corpus.digest, v.chunking, v.embedding)))
        # What the first calls do not need waits for the first answer (`loop_priority`): Chroma's import (when a
        # BM25 variant goes first), the scorers, the price table
        answered = self.generations.first_answer
        self.indexes = IndexQueue(self.ws, dense_after=None if needs_dense(schedule[0]) else answered)
        rank = {v.hash: i for i, v in enumerate(schedule)}
        point("loop_started", loop=asyncio.get_running_loop())
        if self.scores_here and any(not v.retrieval_only for v in self.inputs.variants):
            self.scorers_ready, self.prices_ready = after_first_answer(answered, [chat_configs(v.model) for v in schedule])
        try:
            if self.spec.search.strategy in ("halving", "optuna"):
                from workbench.runner.search import run_search

                await run_search(self, schedule, rank)
                return
            if self.spec.search.strategy == "random":
                from workbench.runner.search import random_variants

                chosen = {v.hash for v in random_variants(list(self.inputs.variants), self.spec.search)}
                schedule = [v for v in schedule if v.hash in chosen]
                self.results.variants = [v for v in self.results.variants if v.hash in chosen]
            done = await asyncio.gather(*(self.run_variant(v, rank[v.hash]) for v in schedule))
            if self.judge is not None:
                # Judged after all generation: a judge sharing the endpoint must not queue before the timed answers
                for variant, rows in done:
                    if rows and variant.hash in self.logging:
                        if not self.hooks.cancelled():
                            await self.judge_rows(rows)
                        self.finish_variant(variant, rows)  # KILLED when cells are missing or unjudged
        finally:
            point("execution_done")
            await asyncio.to_thread(self.cache.flush)  # every answer's cache entry on disk before the sweep ends
            self.retrieval_pool.shutdown(wait=True)
            self.indexes.close()
            for model in self.models.values():
                await model.aclose()
            await self.routed.aclose()
            self.results.stats.update({"model_calls": self.executor.calls, "model_attempts": self.executor.attempts,
                                       "retimed_calls": self.generations.retimed,
                                       "merged_requests": self.generations.merged})

    def model_for(self, variant: VariantConfig, repeat: int = 0) -> ChatModel | None:
        """The variant's chat model; for answer `repeat` > 0 the same model asked with another seed (so
        its own generation cache entry: `spec_repeats.for_repeat`)."""
        if variant.model is None or isinstance(variant.model, RoutedModel):
            return None  # a routed variant's models: `self.routed`
        cfg = for_repeat(variant.model, repeat)
        url = self.env.base_urls.get(cfg.provider)
        key = content_hash([cfg.model_dump(mode="json"), url])
        if key not in self.models:
            self.models[key] = chat_model(cfg, url, self.spec.execution)
        return self.models[key]

    async def retrieve(self, fn, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.retrieval_pool, fn, *args)

    async def run_variant(self, variant: VariantConfig, rank: int, items: Sequence[EvalItem] | None = None,
                          final: bool = True) -> tuple[VariantConfig, list[dict]]:
        """The variant's cells for `items` (default: the eval set, or a response cache's stream); final=False (a
        search's rung): its rows are neither collected nor its run finished, the search does both when the
        variant stops. With `repeats.generation` N, each question is asked N times (a question's answers together)."""
        items = items_for(variant, self.inputs.evalset.items) if items is None else items
        repeats = self.spec.repeats.generation
        jobs = [(item, r) for item in items for r in range(repeats)]
        if not self.known and self.done:
            for r in self.done:
                self.known.setdefault(r["variant_hash"], {})[(r["question_id"], repeat_of(r))] = r
        earlier = self.known.setdefault(variant.hash, {})  # a killed run's cells and a search's earlier rungs
        slots: list[dict | None] = [earlier.get((item.id, r)) for item, r in jobs]
        logged = self.children.get(variant.hash)
        if all(slots) and logged is not None and logged.status in ("FINISHED", "FAILED"):
            rows = [r for r in slots if r is not None]
            if final:
                self.results.rows.extend(rows)
            self.results.run_ids[variant.hash] = logged.run_id
            self.bar.update(len(rows))
            return variant, rows  # finished and logged before the kill: nothing to do
        if logged is not None:
            self.tracker.discard_run(logged.run_id)  # a partial run is re-logged whole
            del self.children[variant.hash]
        for i, row in enumerate(slots):
            if row is not None and (variant.hash, row["question_id"], repeat_of(row)) not in self.logged_cells:
                self.bar.update(1)
                self.log_cell(variant, i, row)
        todo = tuple(item for (item, _), r in zip(jobs, slots) if r is None)
        if todo and not self.hooks.cancelled():
            pipe = await self.prepare(variant, todo)

            async def cell(i: int, item: EvalItem, repeat: int) -> None:
                if slots[i] is not None or self.hooks.cancelled():
                    return
                row = await self.compute(pipe, item, rank, repeat if repeats > 1 else None)
                if row is None:
                    return
                slots[i] = earlier[(item.id, repeat)] = row
                self.finish(row)
                self.log_cell(variant, i, row)

            if isinstance(variant.model, RoutedModel) and variant.model.cache is not None:
                for i, (item, r) in enumerate(jobs):  # a response cache sees the questions as a stream, in order
                    if slots[i] is not None:  # answered before a resume: the cache holds it again
                        self.routed.remember(pipe, item, slots[i])
                    await cell(i, item, r)
            else:
                await asyncio.gather(*(cell(i, item, r) for i, (item, r) in enumerate(jobs)))
        rows = [r for r in slots if r is not None]
        if final:
            self.results.rows.extend(rows)
            if rows and self.judge is None:
                self.finish_variant(variant, rows)
        return variant, rows

    async def prepare(self, variant: VariantConfig, todo: tuple[EvalItem, ...]) -> Any:
        """What `compute` needs for the variant's cells: its pipeline, once its index is ready (another
        backend, e.g. `runner.ray_backend`, hands back what its workers need instead)."""
        index = await self.indexes.index_for(variant, () if variant.retrieval_only else tuple(i.question for i in todo))
        pipe = build_pipeline(variant, index, self.model_for(variant))
        if variant.retrieval_only:
            await self.retrieve(self.ws.retrieve_batch, pipe, todo)
        return pipe

    async def compute(self, pipe: RAGPipeline, item: EvalItem, rank: int,
                      repeat: int | None = None) -> dict[str, Any] | None:
        """One cell: retrieve, answer, score; None when the sweep was cancelled before its model call."""
        peek = None if repeat or item.id in self.retime else self.generations  # its cache entry read off the loop
        hits, retrieve_s, peeked = await self.retrieve(retrieve_and_peek, self.ws.retrieve, peek, pipe, item)
        if self.hooks.cancelled():
            return None
        try:
            row = await self.answer(pipe, item, hits, retrieve_s, rank, repeat, peeked)
        except Cancelled:
            return None  # never started: not a result, not a failure
        if self.scorers_ready is not None:
            await self.scorers_ready  # at once after the first: the import ran on a worker thread
        with span("score"):  # the catalogue's metrics (a metric whose inputs are missing is left out, never 0);
            # item.relevance is graded (plain relevant_ids: grade 1 each); update only adds keys: order is kept
            row.update(score_cell(Cell.from_row(row), item.relevance, pipe.variant.retrieval.k,
                                  self.spec.retrieval_cutoffs, answers=not pipe.variant.retrieval_only).to_row())
        return row

    async def answer(self, pipe: RAGPipeline, item: EvalItem, hits: list, retrieve_s: float, rank: int = 0,
                     repeat: int | None = None, peeked: Peek | None = None) -> dict[str, Any]:
        """One cell's row; `repeat`: which answer to the question (None: the sweep has no repeats)."""
        variant = pipe.variant
        cell = Cell(
            variant_hash=variant.hash,
            variant=variant.short_hash,
            question_id=item.id,
            question=item.question,
            **({} if repeat is None else {"repeat": repeat}),
            reference_answers=list(item.reference_answers),
            relevant_ids=list(item.relevant_ids),
            retrieved_chunk_ids=[h.chunk.id for h in hits],
            retrieved_chunk_doc_ids=[h.chunk.doc_id for h in hits],
            contexts=[h.chunk.text for h in hits],
            started_at_ns=time.time_ns() - int(retrieve_s * 1e9),
            latency_retrieve_s=retrieve_s,
            latency_total_s=retrieve_s,
            latency_measured_at=now_iso(),  # retrieval is always measured now; a model call overrides these
            latency_sweep_id=self.results.sweep_id,
            error=None,
        )
        if variant.prompt is None or variant.model is None:
            return cell.to_row()  # retrieval only
        messages = peeked.messages if peeked is not None else pipe.messages(item.question, hits)  # rendered ahead
        cell = cell.replace(messages=messages)
        if isinstance(variant.model, RoutedModel):
            try:
                return (await self.revived(variant, lambda: self.routed.answer(
                    pipe, item, cell, hits, retrieve_s, rank, item.id in self.retime, repeat or 0))).to_row()
            except ModelError as exc:  # recorded, never scored as 0 (as a plain model's failed cell)
                return cell.replace(answer=None, error=str(exc), latency_total_s=None).to_row()
        try:
            model = self.model_for(variant, repeat) if repeat else pipe.model
            gen, cached, measured = await self.revived(variant, lambda: self.generations.generate(
                model, messages, priority=rank, retime=item.id in self.retime, peeked=peeked))
        except ModelError as exc:  # this cell failed; it is recorded, never scored as 0
            return cell.replace(answer=None, error=str(exc), latency_total_s=None).to_row()
        if self.prices_ready is not None:
            await self.prices_ready  # it is priced on the loop: at once after the first answers
        answer = pipe.answer_from_generation(item.question, hits, retrieve_s, gen)
        return cell.replace(
            answer=answer.answer,
            cached=cached,
            **measured.fields(),
            latency_generate_s=answer.latency["generate_s"],
            latency_total_s=answer.latency["total_s"],
            tokens_prompt=answer.prompt_tokens,
            tokens_completion=answer.completion_tokens,
            cost_usd=answer.cost_usd,
            # what the endpoint sent that was odd but usable (unknown token counts, a truncated answer)
            extra={**cell.extra, "notes": list(gen.notes)} if gen.notes else cell.extra,
        ).to_row()

    async def revived(self, variant: VariantConfig, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`, made once more when it failed because the local server died and `env` restarted it:
        plain and routed cells alike (a cascade's calls that had answered come from the generation cache)."""
        for attempt in range(2):
            try:
                return await call()
            except ModelError:
                if not await self.env.revive_local(variant, self.results.notes) or attempt == 1:
                    raise

    def finish(self, row: dict[str, Any]) -> None:
        """Persist the cell the moment it finishes, then report it."""
        self.cells.write(json.dumps(row, default=str) + "\n")
        self.cells.flush()
        if self.hooks.on_cell:
            self.hooks.on_cell(row)
        self.call_rate.add(row)  # cached cells are not calls: they never count in calls/s
        self.bar.set_postfix_str(f"calls={self.executor.calls} cached={self.generations.cache_hits}"
                                 f"{self.call_rate.text()}", refresh=False)
        self.bar.update(1)

    async def judge_rows(self, rows: list[dict]) -> None:
        """Judge a variant's cells concurrently; each judged row replaces the unjudged one in the record
        (last write wins). With several judge passes (`judge` is a list, spec `repeats.judge`) every pass
        judges every cell and the row keeps each pass's score in `<metric>_passes`, their mean as `<metric>`.
        Rows an earlier run (or rung) judged are left as they are: a resumed sweep never judges a cell twice."""
        from workbench.scoring.judge import is_judged

        judges = self.judges()
        todo = [i for i, r in enumerate(rows) if not is_judged(r, judges[0].cfg.metrics)]
        if not todo:
            return

        def judged(i: int, cell: Cell) -> None:
            rows[todo[i]].update(cell.to_row())
            self.cells.write(json.dumps(rows[todo[i]], default=str) + "\n")

        cells = [Cell.from_row(rows[i]) for i in todo]
        if len(judges) == 1:
            await self.judge.score_cells(cells, on_cell=judged, stop=self.hooks.cancelled)
        else:
            await self.judge_passes(judges, cells, judged)
        self.cells.flush()

    async def judge_passes(self, judges: list, cells: list[Cell], judged) -> None:
        """Every pass over every cell; a cell is written when every pass judged it (else, when the budget stopped
        a pass, with only the calls spent on it, so a resumed run counts them and judges it again)."""
        from workbench.scoring.judge import JUDGE_CALLS, JUDGE_USD, is_judged

        judged_metrics = set(catalogue.names("judged"))
        metrics = judges[0].cfg.metrics
        passes = [await judge.score_cells(cells, stop=self.hooks.cancelled) for judge in judges]
        for i, cell in enumerate(cells):
            spent = {k: sum(float(p[i].extra.get(k) or 0) - float(cell.extra.get(k) or 0) for p in passes)
                     for k in (JUDGE_CALLS, JUDGE_USD)}
            extra = {k: (float(cell.extra.get(k) or 0) + spent[k]) for k in spent} if spent[JUDGE_CALLS] else {}
            if extra:
                extra[JUDGE_CALLS] = int(extra[JUDGE_CALLS])
            if not all(is_judged(p[i].to_row(), metrics) for p in passes):
                if extra:
                    judged(i, cell.replace(extra={**cell.extra, **extra}))
                continue  # failed, never judged (cancelled) or stopped by the budget in some pass
            merged = passes[0][i].replace(extra={**passes[0][i].extra, **extra})
            for metric in (m for m in merged.scores if m in judged_metrics):  # the rest are not the judge's
                values = [p[i].scores.get(metric) for p in passes]
                known = [v for v in values if v is not None]
                merged = merged.with_scores({metric: sum(known) / len(known) if known else None},
                                            {metric: None} if known else None)  # one pass judged it: not failed
                merged = merged.replace(extra={**merged.extra, metric + PASSES_SUFFIX: values})
            judged(i, merged)

    def unjudged(self, rows: list[dict]) -> bool:
        """A judge is on and some answered cell has no judgement (the budget stopped the sweep mid-judging):
        its run is KILLED, so a resumed sweep judges the rest instead of taking the variant as finished."""
        if self.judge is None:
            return False
        from workbench.scoring.judge import is_judged

        metrics = self.judges()[0].cfg.metrics
        return any(not r.get("error") and not is_judged(r, metrics) for r in rows)

    def judges(self) -> list:
        """The judge's passes (spec `repeats.judge`): one judge, or a list of them with the same metrics."""
        return self.judge if isinstance(self.judge, list) else [self.judge]

    def log_cell(self, variant: VariantConfig, i: int, row: dict[str, Any]) -> None:
        """The variant's run is created with its first cell; the first N questions (or every one) get a trace,
        of their first answer when answers repeat (the run's table holds every answer)."""
        if variant.hash not in self.logging:
            self.logging.add(variant.hash)
            self.last_logged = self.tracker.start_variant(variant, self.eval_rows)
        self.logged_cells.add((variant.hash, row["question_id"], repeat_of(row)))
        cap = self.spec.tracking.max_traces_per_variant
        question = i // self.spec.repeats.generation
        if (cap is None or question < cap) and repeat_of(row) == 0:
            self.last_logged = self.tracker.log_cell(variant, row)

    def finish_variant(self, variant: VariantConfig, rows: list[dict], *, asked: int | None = None,
                       tags: dict[str, str] | None = None) -> None:
        """Metrics and table from the logging process; `run_ids` is filled in when it is done. `asked`: the
        questions a search asked this variant (default the eval set): fewer rows mean it was cut short."""
        asked = len(items_for(variant, self.inputs.evalset.items)) if asked is None else asked
        status = "KILLED" if len(rows) < asked * self.spec.repeats.generation or self.unjudged(rows) else None
        metrics = self.results.aggregate(variant.hash, rows)
        done = self.last_logged = self.tracker.finish_variant(variant.hash, rows, metrics, status,
                                                              **({"tags": tags} if tags else {}))

        def note(future) -> None:
            if future.exception() is None and future.result():
                self.results.run_ids[variant.hash] = future.result()

        done.add_done_callback(note)
