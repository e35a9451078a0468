"""How ragas is hooked in: a schema-constrained judge LLM and our embedder, as ragas sees them.

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

answer_relevancy embeds questions with our own embedder wrapped as a
`ragas.embeddings.base.BaseRagasEmbedding`; ragas never downloads a model.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai
from pydantic import BaseModel, ValidationError

from workbench.rag.executor import EndpointLimits, estimate_tokens
from workbench.sync import run_coroutine
from workbench.errors import ModelError
from workbench.rag.chat import describe_api_error
from workbench.rag.replies import MalformedReply, Reply, parse_chat_reply

RESPONSE_FORMAT_STYLES = {"local": "llama_cpp", "openai": "json_schema"}
BINARY_FIELDS = frozenset({"verdict", "attributed", "noncommittal"})


class JudgeParseError(ModelError):
    """The judge answered, but not with JSON matching the response model."""


class JudgeEndpointError(ModelError):
    """The judge endpoint could not be reached or refused the request."""


class JudgeStopped(Exception):
    """The sweep's budget refused the judge's next call: the cell is left unjudged (not failed), so a run with a
    larger budget judges it. Not a ModelError: a refused call is no judgement, not a failed one."""


@dataclass
class Spend:
    """What judging one cell asked of the judge endpoint: calls sent and their USD (from the usage, when metered)."""

    calls: int = 0
    usd: float = 0.0


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


def shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Per-metric record of what the judge answered (asyncio tasks copy the context, so concurrent
# metrics keep separate records).
RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("workbench_judge_record", default=None)
# The Spend of the cell being judged (set per metric task, like RECORD).
SPEND: contextvars.ContextVar[Spend | None] = contextvars.ContextVar("workbench_judge_spend", default=None)


def make_schema_llm(client: openai.AsyncOpenAI, model: str, style: str, *, temperature: float, max_tokens: int,
                    where: str, key: str, api_key_env: str | None, limits: EndpointLimits,
                    on_call: Callable[[], None] | None = None, meter: Any = None) -> Any:
    """A `SchemaLLM` (defined on first use: importing ragas takes ~2 s). Every request goes through
    `client` and is admitted by `limits` (in flight, per minute) like the sweep's own calls, then by `meter`
    (the sweep's budget: `admit(messages)` -> a ticket or None to refuse, `settle(ticket, reply)` -> its USD)."""
    from ragas.llms.base import InstructorBaseRagasLLM

    class SchemaLLM(InstructorBaseRagasLLM):
        """A ragas `InstructorBaseRagasLLM` whose structured output comes from a JSON-schema response_format."""

        def __init__(self) -> None:
            self.model, self.style, self.temperature, self.max_tokens = model, style, temperature, max_tokens

        def __repr__(self) -> str:
            return f"SchemaLLM(model={model!r}, base_url={where!r}, style={style!r})"

        def generate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            return run_coroutine(self.agenerate(prompt, response_model), thread_name="workbench-judge")

        async def agenerate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            params = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": temperature,
                "max_tokens": max_tokens,
                "response_format": response_format(response_model, style),
            }
            async with limits.admit(estimate_tokens(params["messages"], max_tokens)):
                ticket = meter.admit(params["messages"]) if meter is not None else None
                if meter is not None and ticket is None:
                    raise JudgeStopped("the sweep's budget refused the judge's next call")
                if on_call is not None:
                    on_call()
                spend = SPEND.get()
                if spend is not None:
                    spend.calls += 1
                reply = None
                try:
                    raw = await client.chat.completions.with_raw_response.create(**params)
                    reply = parse_chat_reply(raw.http_response.content)  # checked: openai's objects are not
                except openai.APIError as exc:
                    raise JudgeEndpointError(describe_api_error(
                        exc, where=where, what=f"judge model {model!r}", key=key, api_key_env=api_key_env)) from None
                except MalformedReply as exc:
                    raise JudgeParseError(f"{where} sent a malformed reply: {exc}") from None
                finally:
                    if ticket is not None:
                        usd = meter.settle(ticket, reply)
                        if spend is not None and usd:
                            spend.usd += usd
            return _parsed(reply, response_model, where, max_tokens)

    return SchemaLLM()


def _parsed(reply: Reply, response_model: type[BaseModel], where: str, max_tokens: int) -> BaseModel:
    text = reply.text
    cut = f" (the reply was cut off at max_tokens={max_tokens})" if reply.finish_reason == "length" else ""
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
            f"expected JSON for {response_model.__name__}{cut}: {shorten(detail, 120)}; "
            f"reply began {shorten(text, 80)!r}"
        ) from None
    record = RECORD.get()
    if record is not None:
        record.append(parsed)
    return parsed


def make_embedding(embedder: Any) -> Any:
    """One of our embedders (`workbench.rag.embeddings.Embedder`) as a ragas modern embedding."""
    from ragas.embeddings.base import BaseRagasEmbedding

    class WorkbenchRagasEmbedding(BaseRagasEmbedding):
        def __init__(self) -> None:
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

    return WorkbenchRagasEmbedding()


def trim_examples(metric: Any, keep: int) -> None:
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


__all__ = ["BINARY_FIELDS", "JudgeEndpointError", "JudgeParseError", "JudgeStopped", "SPEND", "Spend", "RESPONSE_FORMAT_STYLES", "binary_schema",
           "make_embedding", "make_schema_llm", "nonempty_lists", "response_format", "trim_examples"]
