"""ragas' LLM-judged metrics through any OpenAI-compatible judge model, with a disk cache.

    from workbench.spec import JudgeConfig
    from workbench.rag.local_model import LocalModelServer
    with LocalModelServer() as server:
        judge = Judge(JudgeConfig(), base_url=server.base_url, cache_dir=".workbench/judge")
        scores = judge.score("Who won Super Bowl 50?", "The Denver Broncos",
                             ["The Denver Broncos defeated the Carolina Panthers 24-10."], ["Denver Broncos"])
        scores["faithfulness"]        # JudgeScore(value=1.0, error=None)

How ragas is hooked in
----------------------
ragas 0.4's `metrics.collections` metrics (Faithfulness, AnswerRelevancy, ContextPrecision,
ContextRecall, FactualCorrectness) accept any `ragas.llms.base.InstructorBaseRagasLLM` and call only
`await llm.agenerate(prompt: str, response_model: type[BaseModel])`. `llm_factory` returns an
`InstructorLLM` that gets structured output through the `instructor` library's JSON mode; the
offline SmolLM2-135M fails that way (missing required fields, JSON cut off). `SchemaLLM` below is our
own small `InstructorBaseRagasLLM`: it sends the response model's JSON schema to the endpoint as a
`response_format` and validates the reply with `response_model.model_validate_json`.

The response_format style is chosen by provider (`RESPONSE_FORMAT_STYLES`):

* ``local`` (llama-cpp-python's server): ``{"type": "json_object", "schema": <schema>}`` - the server
  compiles the schema into a grammar, so every reply is JSON of that shape (it can still be cut off at
  max_tokens, which is reported as a parse failure).
* ``openai`` (OpenAI and compatible APIs): ``{"type": "json_schema", "json_schema": {"name": ...,
  "schema": <schema>, "strict": False}}`` - OpenAI's structured outputs; non-strict because ragas'
  schemas are not written for strict mode (which wants every property required and
  additionalProperties false). vLLM and recent llama.cpp servers accept this style too.

Binary judgement fields that ragas declares as plain ``int`` ("0/1") - ``verdict``, ``attributed``,
``noncommittal`` - are narrowed to ``enum [0, 1]`` in the schema sent and checked after parsing, so
a "verdict": 7 can neither come out of the grammar nor slip into a score.

answer_relevancy embeds questions with our own embedder (`make_embedder(cfg.embedding)`, the
offline MiniLM by default) wrapped as a `ragas.embeddings.base.BaseRagasEmbedding`; ragas never
downloads a model. None of these metrics calls tiktoken (checked in tests/test_judge.py).

A failed judgement is never a number: a value of None with the reason (unparseable reply, endpoint
error, missing inputs, a NaN or out-of-range result). Only successful scores are cached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import hashlib
import json
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
from pydantic import BaseModel, ValidationError

from workbench.spec import JudgeConfig, canonical_json
from workbench.errors import ModelError
from workbench.rag.chat import _scrub, _server_message, resolve_endpoint

# ---------------------------------------------------------------- what each metric needs

INPUTS = frozenset({"question", "answer", "contexts", "reference"})
REQUIREMENTS: dict[str, frozenset[str]] = {
    "faithfulness": frozenset({"question", "answer", "contexts"}),
    "answer_relevancy": frozenset({"question", "answer"}),
    "context_precision": frozenset({"question", "contexts", "reference"}),
    "context_recall": frozenset({"question", "contexts", "reference"}),
    "factual_correctness": frozenset({"answer", "reference"}),
}
_MISSING_REASON = {
    "question": "needs a question",
    "answer": "needs an answer (the response is empty)",
    "contexts": "needs retrieved contexts",
    "reference": "needs reference answers",
}
# Floating-point slack for a score at a bound (a cosine of 1.0000001); anything further out is an error.
_EPS = 1e-6
CACHE_FORMAT = 1  # bump when the cache key or the stored value changes meaning

RESPONSE_FORMAT_STYLES = {"local": "llama_cpp", "openai": "json_schema"}
BINARY_FIELDS = frozenset({"verdict", "attributed", "noncommittal"})


@dataclass(frozen=True)
class JudgeScore:
    """One metric for one question: a value in [0, 1], or None and why (never a made-up 0)."""

    value: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


class JudgeParseError(ModelError):
    """The judge answered, but not with JSON matching the response model."""


class JudgeEndpointError(ModelError):
    """The judge endpoint could not be reached or refused the request."""


# ---------------------------------------------------------------- structured output through a JSON schema


def binary_schema(schema: dict) -> dict:
    """A copy of a pydantic JSON schema whose integer 0/1 judgement fields are `enum: [0, 1]`."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict):
                for name, prop in props.items():
                    if name in BINARY_FIELDS and isinstance(prop, dict) and prop.get("type") == "integer":
                        prop["enum"] = [0, 1]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def nonempty_lists(schema: dict) -> dict:
    """`schema` with `minItems: 1` on the top-level array properties (statements, claims, classifications).

    Used for grammar-constrained local models only: SmolLM2 otherwise answers `{"statements": []}`,
    which ragas turns into NaN. A real model's empty list stays possible on the json_schema path.
    """
    schema = copy.deepcopy(schema)
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "array":
            prop.setdefault("minItems", 1)
    return schema


def response_format(response_model: type[BaseModel], style: str) -> dict:
    """The `response_format` that asks an endpoint for JSON matching `response_model`.

    llama_cpp: `{"type": "json_object", "schema": ...}` (llama-cpp-python compiles it to a grammar;
    top-level lists must be non-empty); json_schema: OpenAI's structured outputs, non-strict.
    """
    schema = binary_schema(response_model.model_json_schema())
    if style == "llama_cpp":
        return {"type": "json_object", "schema": nonempty_lists(schema)}
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": response_model.__name__, "schema": schema,
                                                        "strict": False}}
    raise ValueError(f"unknown response_format style {style!r}; choose llama_cpp or json_schema")


def _check_binary(obj: Any) -> None:
    """Raise ValueError when a 0/1 judgement field holds another value (a non-strict endpoint)."""
    if isinstance(obj, BaseModel):
        for name, value in obj:
            if name in BINARY_FIELDS and isinstance(value, int) and value not in (0, 1):
                raise ValueError(f"{name} must be 0 or 1, got {value}")
            _check_binary(value)
    elif isinstance(obj, list):
        for item in obj:
            _check_binary(item)


def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Per-metric record of what the judge answered (asyncio tasks copy the context, so concurrent
# metrics keep separate records).
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("workbench_judge_record", default=None)


def _ragas_llm_base():
    from ragas.llms.base import InstructorBaseRagasLLM

    return InstructorBaseRagasLLM


def _make_schema_llm_class():
    """Define SchemaLLM on first use: importing ragas takes ~2 s."""

    class SchemaLLM(_ragas_llm_base()):
        """A ragas `InstructorBaseRagasLLM` whose structured output comes from a JSON-schema response_format.

        `client` is a callable giving the AsyncOpenAI client for the running event loop (an httpx
        connection pool belongs to one loop). `on_call` is called once per request sent.
        """

        def __init__(self, client: Callable[[], openai.AsyncOpenAI], model: str, style: str, *,
                     temperature: float, max_tokens: int, where: str, key: str,
                     api_key_env: str | None, on_call: Callable[[], None] | None = None) -> None:
            self._client = client
            self.model = model
            self.style = style
            self.temperature = temperature
            self.max_tokens = max_tokens
            self.where = where
            self._key = key
            self.api_key_env = api_key_env
            self._on_call = on_call

        def __repr__(self) -> str:
            return f"SchemaLLM(model={self.model!r}, base_url={self.where!r}, style={self.style!r})"

        def generate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            return _run_sync(lambda: self.agenerate(prompt, response_model))

        async def agenerate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            params = {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "response_format": response_format(response_model, self.style),
            }
            if self._on_call is not None:
                self._on_call()
            try:
                response = await self._client().chat.completions.create(**params)
            except openai.APIError as exc:
                raise JudgeEndpointError(self._endpoint_message(exc)) from None
            if not response.choices:
                raise JudgeParseError(f"{self.where} returned no choices")
            choice = response.choices[0]
            text = choice.message.content or ""
            cut = " (the reply was cut off at max_tokens={})".format(self.max_tokens) \
                if choice.finish_reason == "length" else ""
            if not text.strip():
                raise JudgeParseError(f"empty reply{cut}")
            try:
                # strict=False: llama.cpp's JSON grammar lets raw newlines/tabs into strings, which strict
                # JSON (and pydantic's model_validate_json) rejects although the structure is sound.
                parsed = response_model.model_validate(json.loads(text, strict=False))
                _check_binary(parsed)
            except (ValidationError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
                detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors() else str(exc)
                raise JudgeParseError(
                    f"expected JSON for {response_model.__name__}{cut}: {_shorten(detail, 120)}; "
                    f"reply began {_shorten(text, 80)!r}"
                ) from None
            record = _RECORD.get()
            if record is not None:
                record.append(parsed)
            return parsed

        def _endpoint_message(self, exc: openai.APIError) -> str:
            where, model = self.where, self.model
            if isinstance(exc, openai.APITimeoutError):
                msg = f"the request to {where} timed out (judge model {model!r})"
            elif isinstance(exc, openai.APIConnectionError):
                msg = (f"cannot connect to {where} (judge model {model!r}): check that the server is running "
                       "and the base_url")
            elif isinstance(exc, openai.AuthenticationError):
                return (f"{where} rejected the API key for judge model {model!r}: check the environment "
                        f"variable {self.api_key_env or '(none configured: set api_key_env)'}")
            elif isinstance(exc, openai.APIStatusError):
                msg = f"{where} failed for judge model {model!r} (HTTP {exc.status_code}): {_server_message(exc)}"
            else:
                msg = f"{where} failed for judge model {model!r}: {exc}"
            return _scrub(msg, self._key)

    return SchemaLLM


def _make_embedding_class():
    from ragas.embeddings.base import BaseRagasEmbedding

    class WorkbenchRagasEmbedding(BaseRagasEmbedding):
        """One of our embedders (`workbench.rag.embeddings.Embedder`) as a ragas modern embedding."""

        def __init__(self, embedder: Any) -> None:
            super().__init__(cache=None)
            self.embedder = embedder
            self._lock = threading.Lock()  # onnxruntime sessions are thread-safe; OpenAI clients too; be safe

        def _embed(self, texts: list[str]) -> list[list[float]]:
            with self._lock:
                return np.asarray(self.embedder.embed(texts), dtype=np.float32).tolist()

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self._embed([text])[0]

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self._embed(list(texts))

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return (await asyncio.to_thread(self._embed, [text]))[0]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return await asyncio.to_thread(self._embed, list(texts))

    return WorkbenchRagasEmbedding


def _trim_examples(metric: Any, keep: int) -> None:
    """Keep the `keep` shortest few-shot examples of each prompt a ragas metric holds (instance-level)."""
    from ragas.prompt.metrics.base_prompt import BasePrompt

    for prompt in vars(metric).values():
        # FactualCorrectness' claim prompt picks its examples per call from `_all_examples` (short ones).
        if isinstance(prompt, BasePrompt) and not hasattr(prompt, "_all_examples"):
            examples = list(prompt.examples)
            if len(examples) > keep:
                size = {id(ex): len(ex[0].model_dump_json()) + len(ex[1].model_dump_json()) for ex in examples}
                shortest = sorted(examples, key=lambda ex: size[id(ex)])[:keep]
                prompt.examples = [ex for ex in examples if ex in shortest]


def _run_sync(make_coro: Callable[[], Any]) -> Any:
    """Run a coroutine to completion from sync code, also inside a running loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    # A loop runs in this thread (a notebook cell, an async caller): asyncio.run would raise, so run a
    # fresh loop in a worker thread and wait for it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-judge") as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


# ---------------------------------------------------------------- the judge


class Judge:
    """ragas LLM-judged metrics for one question at a time, through the judge a `JudgeConfig` names.

    `base_url` overrides `cfg.base_url` (the local server's URL is known only once it runs).
    `score(...)` returns one `JudgeScore` per configured metric; `ascore(...)` is the same for async
    callers. `calls` counts requests sent to the judge, `cache_hits` metric scores read from the cache.
    """

    def __init__(self, cfg: JudgeConfig, base_url: str | None = None, *, cache_dir: str | Path | None = None,
                 timeout: float = 120, max_concurrency: int | None = None,
                 few_shot: int | None = None) -> None:
        self.cfg = cfg
        self.base_url, self._key = resolve_endpoint(cfg, cfg.provider, f"judge model {cfg.model!r}", base_url)
        self.timeout = timeout
        self.style = RESPONSE_FORMAT_STYLES[cfg.provider]
        # The local server answers one request at a time: more in flight only queue up and time out.
        self.max_concurrency = max_concurrency or (1 if cfg.provider == "local" else 8)
        # ragas' few-shot examples make prompts of up to ~1,500 tokens; the local model has a 2,048-token
        # window (and reads ~100-200 tokens/s on 2 cores): keep only its shortest example per prompt.
        self.few_shot = few_shot if few_shot is not None else (1 if cfg.provider == "local" else None)
        # answer_relevancy asks `strictness` times for a question with the same prompt; at temperature 0
        # the answers are identical (the local server decodes deterministically), so ask once.
        self.strictness = 1 if cfg.temperature == 0 else 3
        self.calls = 0
        self.cache_hits = 0
        self._count_lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> (client, semaphore)
        self._metrics: dict[str, Any] | None = None
        self._metrics_lock = threading.Lock()
        self._cache = None
        if cache_dir is not None:
            import diskcache

            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(cache_dir))

    def __repr__(self) -> str:  # never shows the key
        return f"Judge(model={self.cfg.model!r}, base_url={self.base_url!r}, metrics={self.cfg.metrics})"

    # ------------------------------------------------------------ public API

    def requirements(self) -> dict[str, frozenset[str]]:
        """For each configured metric, the inputs it needs from {question, answer, contexts, reference}."""
        return {m: REQUIREMENTS[m] for m in self.cfg.metrics}

    def score(self, question: str, answer: str, contexts: Sequence[str],
              references: Sequence[str]) -> dict[str, JudgeScore]:
        """Every configured metric for one question (blocking; safe inside a running event loop)."""
        return _run_sync(lambda: self._ascore_and_close(question, answer, contexts, references))

    async def ascore(self, question: str, answer: str, contexts: Sequence[str],
                     references: Sequence[str]) -> dict[str, JudgeScore]:
        """`score` for async callers (the sweep runner); metrics run concurrently up to max_concurrency."""
        contexts = [c for c in contexts if c and c.strip()]
        references = [r for r in references if r and r.strip()]
        present = {
            "question": bool(question and question.strip()),
            "answer": bool(answer and answer.strip()),
            "contexts": bool(contexts),
            "reference": bool(references),
        }
        results = await asyncio.gather(*(
            self._score_one(metric, present, question, answer, contexts, references) for metric in self.cfg.metrics
        ))
        return dict(zip(self.cfg.metrics, results))

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
        return "judge:" + hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # ------------------------------------------------------------ internals

    async def _ascore_and_close(self, *args) -> dict[str, JudgeScore]:
        try:
            return await self.ascore(*args)
        finally:  # this loop ends with the call: close its connection pool while the loop still runs
            entry = self._loops.pop(asyncio.get_running_loop(), None)
            if entry is not None:
                await entry[0].close()

    def _loop_state(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(loop)
        if entry is None:
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key, timeout=self.timeout,
                                        max_retries=2)
            entry = (client, asyncio.Semaphore(self.max_concurrency))
            self._loops[loop] = entry
        return entry

    def _count_call(self) -> None:
        with self._count_lock:
            self.calls += 1

    def _ragas_metrics(self) -> dict[str, Any]:
        with self._metrics_lock:
            if self._metrics is None:
                self._metrics = self._build_metrics()
            return self._metrics

    def _build_metrics(self) -> dict[str, Any]:
        from ragas.metrics.collections import (
            AnswerRelevancy,
            ContextPrecision,
            ContextRecall,
            FactualCorrectness,
            Faithfulness,
        )

        llm = _make_schema_llm_class()(
            lambda: self._loop_state()[0], self.cfg.model, self.style, temperature=self.cfg.temperature,
            max_tokens=self.cfg.max_tokens, where=self.base_url, key=self._key, api_key_env=self.cfg.api_key_env,
            on_call=self._count_call,
        )
        metrics: dict[str, Any] = {}
        for name in self.cfg.metrics:
            if name == "faithfulness":
                metrics[name] = Faithfulness(llm=llm)
            elif name == "answer_relevancy":
                from workbench.rag.embeddings import make_embedder

                embeddings = _make_embedding_class()(make_embedder(self.cfg.embedding))
                metrics[name] = AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=self.strictness)
            elif name == "context_precision":
                metrics[name] = ContextPrecision(llm=llm)
            elif name == "context_recall":
                metrics[name] = ContextRecall(llm=llm)
            elif name == "factual_correctness":
                metrics[name] = FactualCorrectness(llm=llm)
        if self.few_shot is not None:
            for metric in metrics.values():
                _trim_examples(metric, self.few_shot)
        return metrics

    async def _score_one(self, metric: str, present: dict[str, bool], question: str, answer: str,
                         contexts: list[str], references: list[str]) -> JudgeScore:
        missing = [need for need in ("reference", "contexts", "answer", "question")
                   if need in REQUIREMENTS[metric] and not present[need]]
        if missing:
            return JudgeScore(None, "; ".join(_MISSING_REASON[m] for m in missing))
        key = self.cache_key(metric, question, answer, contexts, references)
        if self._cache is not None:
            cached = self._cache.get(key)
            if cached is not None:
                with self._count_lock:
                    self.cache_hits += 1
                return JudgeScore(float(cached))
        _client, semaphore = self._loop_state()
        async with semaphore:
            result = await self._evaluate(metric, question, answer, contexts, references)
        if result.value is not None and self._cache is not None:
            self._cache.set(key, result.value)
        return result

    async def _evaluate(self, metric: str, question: str, answer: str, contexts: list[str],
                        references: list[str]) -> JudgeScore:
        ragas_metric = self._ragas_metrics()[metric]
        # ragas takes one reference text: the first reference answer (SQuAD lists the canonical one first).
        reference = references[0] if references else ""
        kwargs: dict[str, Any] = {
            "faithfulness": dict(user_input=question, response=answer, retrieved_contexts=contexts),
            "answer_relevancy": dict(user_input=question, response=answer),
            "context_precision": dict(user_input=question, reference=reference, retrieved_contexts=contexts),
            "context_recall": dict(user_input=question, retrieved_contexts=contexts, reference=reference),
            "factual_correctness": dict(response=answer, reference=reference),
        }[metric]
        record: list = []
        token = _RECORD.set(record)
        try:
            result = await ragas_metric.ascore(**kwargs)
        except JudgeParseError as exc:
            return JudgeScore(None, f"{metric}: could not parse the judge's answer: {exc}")
        except ModelError as exc:
            return JudgeScore(None, f"{metric}: the judge endpoint failed: {exc}")
        except Exception as exc:  # ragas' own checks and anything unexpected: a reason, never a number
            return JudgeScore(None, f"{metric}: ragas failed: {type(exc).__name__}: {_shorten(str(exc), 200)}")
        finally:
            _RECORD.reset(token)
        return self._checked(metric, result.value, record)

    @staticmethod
    def _checked(metric: str, value: Any, record: list) -> JudgeScore:
        if metric == "answer_relevancy" and not any(getattr(r, "question", "").strip() for r in record):
            # ragas returns 0.0 when the judge generated no question: that is no judgement, not a zero.
            return JudgeScore(None, f"{metric}: the judge generated no question from the answer")
        try:
            number = float(value)
        except (TypeError, ValueError):
            return JudgeScore(None, f"{metric}: ragas returned a non-number ({value!r})")
        if math.isnan(number):
            return JudgeScore(None, f"{metric}: no judgement (the judge extracted no statements/verdicts; ragas gave NaN)")
        if not (-_EPS <= number <= 1 + _EPS):
            return JudgeScore(None, f"{metric}: score {number!r} is outside [0, 1]")
        return JudgeScore(min(max(number, 0.0), 1.0))  # only float slack (|excess| <= 1e-6) is absorbed


__all__ = ["Judge", "JudgeScore", "JudgeParseError", "JudgeEndpointError", "REQUIREMENTS", "response_format",
           "RESPONSE_FORMAT_STYLES"]
