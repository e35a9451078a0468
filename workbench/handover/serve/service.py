"""The served pipeline: one question in, a typed answer out, measured, counted and handed to the trace writer.

Dense and hybrid retrieval run in a small thread pool (Chroma and the ONNX embedder are synchronous and release
the interpreter lock); BM25 alone runs on the event loop (well under a millisecond, and it holds the lock: a
thread would only add two hand-offs of the lock per request, each waiting for the other threads). Generation goes
through the sweep's `Executor` (the endpoint's bounded concurrency, rate limits and retries; the local model
takes one request at a time), so production calls the model exactly as the sweep did. The trace is written
off the request path, in a helper process (`tracking.serve_writer`): records are handed over in batches, one
queue put per `HANDOFF_S` (each put wakes the queue's feeder thread, which then competes for the lock).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from workbench.errors import ConfigError, ModelError, WorkbenchError
from workbench.handover.serve.metrics import ServeMetrics
from workbench.rag.pipeline import Answer
from workbench.rag.routed_pipeline import RoutedPipeline
from workbench.spec import ExecutionConfig
from workbench.tracking.serve_log import ServedRequest, UserFeedback
from workbench.tracking.serve_writer import ServeWriter

ANSWER_ID = re.compile(r"^ans_[0-9a-f]{32}$")
HANDOFF_S = 0.05  # the longest a finished request's record waits in the service before it goes to the writer


class UnknownAnswer(WorkbenchError):
    """Feedback names an answer this deployment never gave."""


class AnswerFailed(WorkbenchError):
    """The model could not answer (after the executor's retries)."""

    def __init__(self, message: str, answer_id: str):
        super().__init__(message)
        self.answer_id = answer_id


def new_answer_id() -> str:
    return f"ans_{uuid.uuid4().hex}"


def normalize(question: str) -> str:
    return " ".join(question.split()).casefold()


class Service:
    """A loaded export answering questions; create `start()` inside the event loop that serves it."""

    def __init__(self, pipeline, log: ServeWriter | None, *, execution: ExecutionConfig, answer_cache: int = 0,
                 retrieval_threads: int = 4):
        self.pipeline = pipeline
        self.rag = pipeline.rag
        self.log = log
        self.execution = execution
        self.metrics = ServeMetrics()
        self._threads = ThreadPoolExecutor(retrieval_threads, thread_name_prefix="retrieve")
        self._cache: OrderedDict[str, Answer] = OrderedDict()
        self._cache_size = answer_cache
        self.executor = None
        # computed once: the variant's hash is a pydantic dump and a sha256, milliseconds a request if asked each time
        self.config_hash = self.rag.variant.hash
        self._inline_retrieval = not _needs_vectors(self.rag.variant)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoff = None  # the loop's pending call that hands the buffered records to the writer

    def start(self) -> None:
        from workbench.rag.executor import Executor

        self.executor = Executor(self.execution)  # its limits bind to the running loop
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        if self._handoff is not None:
            self._handoff.cancel()
        if self.log is not None:
            counts = self.log.close()
            if counts:
                print(f"workbench serve: stopped; {counts['written']} traces written ({counts['lost']} lost), "
                      f"{counts['feedback_written']} feedback ({counts['feedback_lost']} lost)", flush=True)
        self.pipeline.close()

    @property
    def model_name(self) -> str:
        m = self.rag.variant.model
        return m.model if m is not None else "retrieval-only"

    async def answer(self, question: str, route: str) -> tuple[str, Answer]:
        """(answer id, answer); a model failure raises `AnswerFailed` after its trace is queued."""
        answer_id = new_answer_id()
        started_ns, t0 = time.time_ns(), time.perf_counter()
        self.metrics.in_flight.inc()
        hits, retrieve_s, messages = [], 0.0, None
        try:
            key = normalize(question)
            cached = self._cache.get(key) if self._cache_size else None
            if cached is not None:
                self.metrics.cache_hits.inc()
                result = cached
            else:
                if self._inline_retrieval:
                    hits, retrieve_s = self.rag.retrieve(question)
                else:
                    hits, retrieve_s = await self._loop.run_in_executor(self._threads, self.rag.retrieve, question)
                routed = isinstance(self.rag, RoutedPipeline)  # a router, cascade or cache
                if not routed and self.rag.model is None:
                    raise ConfigError("this export is retrieval only (no model): it cannot answer questions")
                messages = self.rag.messages(question, hits)
                if routed:  # every call through the executor
                    result = await self.rag.aanswer_from_hits(question, hits, retrieve_s, self._call)
                else:
                    gen = await self.executor.generate(self.rag.model, messages)
                    result = self.rag.answer_from_generation(question, hits, retrieve_s, gen)
                if self._cache_size:
                    self._cache[key] = result
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        except Exception as exc:
            error = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            self._record(ServedRequest(
                answer_id=answer_id, route=route, question=question, started_ns=started_ns,
                total_s=time.perf_counter() - t0, retrieve_s=retrieve_s, messages=messages,
                contexts=[_context(c) for c in _contexts(hits)], model=self.model_name, error=error))
            self.metrics.errors.labels(route, "model" if isinstance(exc, ModelError) else type(exc).__name__).inc()
            raise AnswerFailed(error, answer_id) from exc
        finally:
            self.metrics.in_flight.dec()
        total_s = time.perf_counter() - t0
        self.metrics.latency.labels(route).observe(total_s)
        self.metrics.model_latency.observe(result.latency.get("generate_s", 0.0))
        for kind, n in (("prompt", result.prompt_tokens), ("completion", result.completion_tokens)):
            if n:
                self.metrics.tokens.labels(kind).inc(n)
        if result.cost_usd:
            self.metrics.cost.inc(result.cost_usd)
        self._record(ServedRequest(
            answer_id=answer_id, route=route, question=question, started_ns=started_ns, total_s=total_s,
            retrieve_s=result.latency.get("retrieve_s", 0.0), generate_s=result.latency.get("generate_s", 0.0),
            answer=result.answer, messages=messages, contexts=[_context(c) for c in result.contexts],
            prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            cost_usd=result.cost_usd, model=self.model_name, answered_by=result.answered_by,
            escalated=result.routing.get("escalated"), calls=result.routing.get("calls")))
        return answer_id, result

    async def _call(self, chat, messages: list[dict]):
        """One call of a routed answer, bounded and retried by the executor as the sweep's were."""
        return await self.executor.generate(chat, messages), False

    def _record(self, req: ServedRequest) -> None:
        if self.log is not None:
            self.log.log_request(req)
            self._schedule_handoff()

    def _schedule_handoff(self) -> None:
        if self._handoff is None:
            self._handoff = self._loop.call_later(HANDOFF_S, self._hand_off)

    def _hand_off(self) -> None:
        self._handoff = None
        self.log.hand_off()

    async def feedback(self, fb: UserFeedback) -> None:
        """Queue feedback on an answer this deployment gave; an unknown answer id is refused."""
        known = ANSWER_ID.match(fb.answer_id) and self.log is not None and (
            self.log.issued(fb.answer_id)  # the usual case, without a thread hop
            or await self._loop.run_in_executor(self._threads, self.log.knows, fb.answer_id))
        if not known:
            raise UnknownAnswer(
                f"answer_id {fb.answer_id!r}: no answer with this id was given by this deployment; send the "
                "`answer_id` of a /answer reply (or the `id` of a /v1/chat/completions reply)")
        self.metrics.feedback.labels("correction" if fb.correction else "rating" if fb.rating is not None
                                     else "comment").inc()
        self.log.log_feedback(fb)
        self._schedule_handoff()


def _needs_vectors(variant) -> bool:
    from workbench.rag.retrieval import needs_vectors

    return needs_vectors(variant.retrieval)


def _contexts(hits) -> list:
    from workbench.rag.pipeline import contexts_from_hits

    return list(contexts_from_hits(hits))


def _context(c) -> dict:
    return {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text, "score": float(c.score), "rank": c.rank}
