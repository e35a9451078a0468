"""ragas' LLM-judged metrics through any OpenAI-compatible judge model, with a disk cache.

    from workbench.spec import JudgeConfig
    from workbench.rag.local_model import LocalModelServer
    with LocalModelServer() as server, Judge(JudgeConfig(), base_url=server.base_url,
                                             cache_dir=".workbench/cache/judge") as judge:
        scores = judge.score("Who won Super Bowl 50?", "The Denver Broncos",
                             ["The Denver Broncos defeated the Carolina Panthers 24-10."], ["Denver Broncos"])
        scores["faithfulness"]        # JudgeScore(value=1.0, error=None)
        judged = await judge.score_cells(cells)   # a variant's cells, concurrently (the sweep runner)

Which metrics can be judged, and how (the ragas class and the inputs it is given), is declared in
`workbench.scoring.catalogue`; the ragas plumbing (schema-constrained JSON through `response_format`,
our embedder) is in `workbench.scoring.ragas_adapters`.

One loop, one client: the judge sends its requests from its own event loop in a background thread,
through ONE AsyncOpenAI client, whoever calls it (a notebook cell, the sweep's event loop, a thread).
Requests are admitted by the sweep's `EndpointLimits`: in flight at most `max_concurrency` (from the
spec's `execution`: `local_concurrency` for the local server, `concurrency` otherwise), and per minute
`requests_per_minute` / `tokens_per_minute` when set; with its `timeout_s` and `max_retries`. `close()` /
`aclose()` closes the client, the loop and the cache; the sweep runner calls it when the sweep ends.

A failed judgement is never a number: a value of None with the reason (unparseable reply, endpoint
error, missing inputs, a NaN or out-of-range result). Only successful scores are cached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from workbench.errors import ModelError
from workbench.rag.cache import ResultCache
from workbench.rag.chat import resolve_endpoint, scrub_error
from workbench.rag.deadline import AsyncDeadlineClient, limits
from workbench.rag.executor import EndpointLimits
from workbench.scoring import catalogue
from workbench.scoring.cell import Cell
from workbench.scoring.ragas_adapters import (
    RECORD,
    RESPONSE_FORMAT_STYLES,
    SPEND,
    JudgeEndpointError,
    JudgeParseError,
    JudgeStopped,
    Spend,
    make_embedding,
    make_schema_llm,
    response_format,
    shorten,
    trim_examples,
)
from workbench.spec import ExecutionConfig, JudgeConfig, canonical_json

_MISSING_REASON = {
    "question": "needs a question",
    "answer": "needs an answer (the response is empty)",
    "contexts": "needs retrieved contexts",
    "reference": "needs reference answers",
}
# Floating-point slack for a score at a bound (a cosine of 1.0000001); anything further out is an error.
_EPS = 1e-6
CACHE_FORMAT = 1  # bump when the cache key or the stored value changes meaning
# What judging a cell cost, kept on its row so a resumed sweep's budget counts it (summed over the runs)
JUDGE_CALLS, JUDGE_USD = "judge_calls", "judge_cost_usd"
STOPPED = "not judged: the sweep's budget refused the judge's call (a run with a larger budget judges it)"


@dataclass(frozen=True)
class JudgeScore:
    """One metric for one question: a value in [0, 1], or None and why (never a made-up 0)."""

    value: float | None
    error: str | None = None
    stopped: bool = False  # the budget refused a call: no judgement (neither a value nor a failure)

    @property
    def ok(self) -> bool:
        return self.value is not None


def is_judged(row: dict[str, Any], metrics: Sequence[str]) -> bool:
    """Every metric has a value or a reason it failed (a cell the budget stopped mid-judging has neither)."""
    return all(row.get(m) is not None or row.get(f"{m}_error") for m in metrics)


def with_spend(cell: Cell, spend: Spend) -> Cell:
    """The cell with this judging's calls and USD added to what earlier runs spent on it."""
    if not spend.calls:
        return cell
    extra = dict(cell.extra)
    extra[JUDGE_CALLS] = int(extra.get(JUDGE_CALLS) or 0) + spend.calls
    extra[JUDGE_USD] = float(extra.get(JUDGE_USD) or 0.0) + spend.usd
    return cell.replace(extra=extra)


def requirements(metrics: Sequence[str]) -> dict[str, frozenset[str]]:
    """For each judged metric, the inputs it needs from {question, answer, contexts, reference}."""
    return {m: catalogue.get(m).judge.inputs for m in metrics}


class Judge:
    """ragas LLM-judged metrics through the judge a `JudgeConfig` names.

    `base_url` overrides `cfg.base_url` (the local server's URL is known only once it runs).
    `execution` (the spec's ExecutionConfig) sets the concurrency, timeout and retries; the keyword
    arguments override it. `calls` counts requests sent, `cache_hits` scores read from the cache.
    """

    def __init__(self, cfg: JudgeConfig, base_url: str | None = None, *, cache_dir: str | Path | None = None,
                 execution: ExecutionConfig | None = None, timeout: float | None = None,
                 max_concurrency: int | None = None, max_retries: int | None = None,
                 few_shot: int | None = None, judge_pass: int = 0, meter: Any = None) -> None:
        catalogue.check_judge_metrics(cfg.metrics)
        self.cfg = cfg
        self.judge_pass = judge_pass  # spec `repeats.judge`: pass j > 0 is asked again, its own cache entry
        # the sweep's budget (runner.budget.BudgetGuard.meter): admits or refuses each call, settles its cost
        self.meter = meter
        self.base_url, self._key = resolve_endpoint(cfg, cfg.provider, f"judge model {cfg.model!r}", base_url)
        local = cfg.provider == "local"
        self.timeout = timeout or (execution.timeout_s if execution else 120.0)
        self.max_retries = max_retries if max_retries is not None else (execution.max_retries if execution else 2)
        # The local server answers one request at a time: more in flight only queue up and time out.
        default_slots = (execution.local_concurrency if local else execution.concurrency) if execution else (1 if local else 8)
        self.max_concurrency = max_concurrency or default_slots
        # The sweep's per-endpoint limits: requests in flight, and per minute when the spec sets them.
        self.limits = EndpointLimits(self.max_concurrency, execution.requests_per_minute if execution else None,
                                     execution.tokens_per_minute if execution else None)
        self.style = RESPONSE_FORMAT_STYLES[cfg.provider]
        # ragas' few-shot examples make prompts of up to ~1,500 tokens; the local model has a 2,048-token
        # window (and reads ~100-200 tokens/s on 2 cores): keep only its shortest example per prompt.
        self.few_shot = few_shot if few_shot is not None else (1 if local else None)
        # answer_relevancy asks `strictness` times for a question with the same prompt; at temperature 0
        # the answers are identical (the local server decodes deterministically), so ask once.
        self.strictness = 1 if cfg.temperature == 0 else 3
        self.calls = 0
        self.cache_hits = 0
        self._cache = ResultCache(cache_dir) if cache_dir is not None else None
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: openai.AsyncOpenAI | None = None  # made on the judge's loop, used only there
        self._metrics: dict[str, Any] = {}

    def __repr__(self) -> str:  # never shows the key
        return f"Judge(model={self.cfg.model!r}, base_url={self.base_url!r}, metrics={self.cfg.metrics})"

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ public API

    def requirements(self) -> dict[str, frozenset[str]]:
        """For each configured metric, the inputs it needs from {question, answer, contexts, reference}."""
        return requirements(self.cfg.metrics)

    def score(self, question: str, answer: str, contexts: Sequence[str],
              references: Sequence[str]) -> dict[str, JudgeScore]:
        """Every configured metric for one question (blocking; safe inside a running event loop)."""
        return self._submit(lambda: self._score(question, answer, contexts, references)).result()

    async def ascore(self, question: str, answer: str, contexts: Sequence[str],
                     references: Sequence[str]) -> dict[str, JudgeScore]:
        """`score` for async callers; the caller's loop stays free while the judge works."""
        return await asyncio.wrap_future(self._submit(lambda: self._score(question, answer, contexts, references)))

    async def score_cells(self, cells: Sequence[Cell], *, on_cell: Callable[[int, Cell], None] | None = None,
                          stop: Callable[[], bool] | None = None) -> list[Cell]:
        """The cells with every configured metric (`<metric>` and `<metric>_error`), judged concurrently.

        A failed cell is returned as it is (never judged). `on_cell(i, cell)` runs in the caller's loop
        as each cell is judged; once `stop()` is true, cells not yet started are returned unjudged. A cell
        whose judging the budget refused keeps no score (`is_judged` is false) but carries the calls it
        cost (`judge_calls`, `judge_cost_usd`), and `on_cell` gets it too when it cost any.
        """
        out = list(cells)
        slots = asyncio.Semaphore(self.max_concurrency)  # cells in flight; requests are bounded separately

        async def one(i: int, cell: Cell) -> None:
            if not cell.ok:
                return
            async with slots:
                if stop is not None and stop():
                    return
                spend = Spend()
                scores = await asyncio.wrap_future(self._submit(lambda: self._score(
                    cell.question, cell.answer or "", cell.contexts or [], cell.reference_answers or [], spend)))
            if any(s.stopped for s in scores.values()):
                if not spend.calls:
                    return
                out[i] = with_spend(cell, spend)
            else:
                out[i] = with_spend(cell.with_scores({m: s.value for m, s in scores.items()},
                                                     {m: s.error for m, s in scores.items()}), spend)
            if on_cell is not None:
                on_cell(i, out[i])

        await asyncio.gather(*(one(i, c) for i, c in enumerate(cells)))
        return out

    def cache_key(self, metric: str, question: str, answer: str, contexts: Sequence[str],
                  references: Sequence[str]) -> str:
        """sha256 of the canonical JSON of (judge config, metric, inputs).

        For the local provider the server's URL (a new port each run) is left out: the model and its
        decoding settings identify the judge. A remote judge's effective base_url is part of the key.
        """
        judge = self.cfg.model_dump(mode="json", exclude={"metrics"})  # which others run is irrelevant
        if self.cfg.provider != "local":
            judge["base_url"] = self.base_url
        from ragas import __version__ as ragas_version

        adapter = {"style": self.style, "few_shot": self.few_shot, "strictness": self.strictness}
        payload = {"format": CACHE_FORMAT, "ragas": ragas_version, "judge": judge, "adapter": adapter, "metric": metric,
                   "question": question, "answer": answer, "contexts": list(contexts),
                   "references": list(references)}
        if self.judge_pass:  # pass 0's keys stay as they were before repeats existed
            payload["judge_pass"] = self.judge_pass
        return "judge:" + hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def close(self) -> None:
        """Close the client, stop the judge's loop and close the cache (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            if self._client is not None:
                asyncio.run_coroutine_threadsafe(self._client.close(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
        if self._cache is not None:
            self._cache.close()

    async def aclose(self) -> None:
        """`close` for async callers (the sweep runner)."""
        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------ the judge's own loop

    def _submit(self, make: Callable[[], Any]) -> concurrent.futures.Future:
        with self._lock:
            if self._closed:
                raise ModelError(f"{self!r} is closed; make a new Judge")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="workbench-judge", daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(make(), loop)

    async def _score(self, question: str, answer: str, contexts: Sequence[str],
                     references: Sequence[str], spend: Spend | None = None) -> dict[str, JudgeScore]:
        contexts = [c for c in contexts if c and c.strip()]
        references = [r for r in references if r and r.strip()]
        inputs = {"question": question, "answer": answer, "contexts": contexts, "reference": references}
        present = {"question": bool(question and question.strip()), "answer": bool(answer and answer.strip()),
                   "contexts": bool(contexts), "reference": bool(references)}
        results = await asyncio.gather(*(self._score_one(metric, inputs, present, spend) for metric in self.cfg.metrics))
        return dict(zip(self.cfg.metrics, results))

    def _count_call(self) -> None:
        self.calls += 1  # only ever on the judge's loop thread

    def _ragas_metric(self, name: str) -> Any:
        """The ragas metric object, built on first use on the judge's loop with its one client."""
        if not self._metrics:
            import ragas.metrics.collections as collections

            # the timeout bounds each whole request: a trickling judge cannot hold the sweep open
            self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key, timeout=self.timeout,
                                              max_retries=self.max_retries,
                                              http_client=AsyncDeadlineClient(self.timeout,
                                                                              limits=limits(self.max_concurrency)))
            llm = make_schema_llm(self._client, self.cfg.model, self.style, temperature=self.cfg.temperature,
                                  max_tokens=self.cfg.max_tokens, where=self.base_url, key=self._key,
                                  api_key_env=self.cfg.api_key_env, limits=self.limits,
                                  on_call=self._count_call, meter=self.meter)
            for metric in self.cfg.metrics:
                binding = catalogue.get(metric).judge
                cls = getattr(collections, binding.ragas)
                kwargs: dict[str, Any] = {"llm": llm}
                if binding.embeddings:
                    from workbench.rag.embeddings import make_embedder

                    kwargs["embeddings"] = make_embedding(make_embedder(self.cfg.embedding))
                if "strictness" in inspect.signature(cls).parameters:
                    kwargs["strictness"] = self.strictness
                self._metrics[metric] = cls(**kwargs)
                if self.few_shot is not None:
                    trim_examples(self._metrics[metric], self.few_shot)
        return self._metrics[name]

    async def _score_one(self, metric: str, inputs: dict[str, Any], present: dict[str, bool],
                         spend: Spend | None = None) -> JudgeScore:
        binding = catalogue.get(metric).judge
        missing = [need for need in ("reference", "contexts", "answer", "question")
                   if need in binding.inputs and not present[need]]
        if missing:
            return JudgeScore(None, "; ".join(_MISSING_REASON[m] for m in missing))
        key = self.cache_key(metric, inputs["question"], inputs["answer"], inputs["contexts"], inputs["reference"])
        if self._cache is not None:
            cached = await asyncio.to_thread(self._cache.get, key)  # disk I/O off the loop
            if cached is not None:
                self.cache_hits += 1
                return JudgeScore(float(cached))
        result = await self._evaluate(metric, inputs, spend)
        if result.value is not None and self._cache is not None:
            await asyncio.to_thread(self._cache.set, key, result.value)
        return result

    async def _evaluate(self, metric: str, inputs: dict[str, Any], spend: Spend | None = None) -> JudgeScore:
        # ragas takes one reference text: the first reference answer (SQuAD lists the canonical one first).
        given = {**inputs, "reference": inputs["reference"][0] if inputs["reference"] else ""}
        kwargs = {arg: given[source] for arg, source in catalogue.get(metric).judge.args}
        record: list = []
        token, spent = RECORD.set(record), SPEND.set(spend)
        try:
            result = await self._ragas_metric(metric).ascore(**kwargs)
        except JudgeStopped:
            return JudgeScore(None, STOPPED, stopped=True)
        except JudgeParseError as exc:
            return self._failed(f"{metric}: could not parse the judge's answer: {exc}")
        except ModelError as exc:
            return self._failed(f"{metric}: the judge endpoint failed: {exc}")
        except Exception as exc:  # ragas' own checks and anything unexpected: a reason, never a number
            return self._failed(f"{metric}: ragas failed: {type(exc).__name__}: {shorten(str(exc), 200)}")
        finally:
            try:
                RECORD.reset(token)
                SPEND.reset(spent)
            except ValueError:  # an abandoned coroutine closed by the garbage collector runs in another context
                pass
        return self._checked(metric, result.value, record)

    def _failed(self, reason: str) -> JudgeScore:
        """No score, and why — through the one scrubber every client's errors pass (servers echo keys)."""
        return JudgeScore(None, scrub_error(reason, self._key))

    @staticmethod
    def _checked(metric: str, value: Any, record: list) -> JudgeScore:
        must = catalogue.get(metric).judge.must_generate
        if must and not any(str(getattr(r, must, "") or "").strip() for r in record):
            # ragas returns 0.0 when the judge generated nothing to compare: that is no judgement, not a zero.
            return JudgeScore(None, f"{metric}: the judge generated no {must} from the answer")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return JudgeScore(None, f"{metric}: ragas returned a non-number ({value!r})")
        if math.isnan(number):
            return JudgeScore(None, f"{metric}: no judgement (the judge extracted no statements/verdicts; ragas gave NaN)")
        if not (-_EPS <= number <= 1 + _EPS):
            return JudgeScore(None, f"{metric}: score {number!r} is outside [0, 1]")
        return JudgeScore(min(max(number, 0.0), 1.0))  # only float slack (|excess| <= 1e-6) is absorbed


def __getattr__(name: str) -> Any:
    if name == "REQUIREMENTS":  # the catalogue's judged metrics, as registered now
        return requirements(catalogue.names("judged"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["JUDGE_CALLS", "JUDGE_USD", "Judge", "JudgeScore", "is_judged", "with_spend", "JudgeParseError", "JudgeEndpointError", "REQUIREMENTS", "requirements",
           "response_format", "RESPONSE_FORMAT_STYLES"]
