"""ragas' `TestsetGenerator` as the second generator of `workbench synth` (`--generator ragas`).

    workbench synth SPEC --generator ragas --n 20 --out eval.jsonl     # or synth: {generator: ragas}

Our own chunks (the spec's first chunking, a stratified sample) go to ragas as pre-chunked documents
(`generate_with_chunks`), so every node of its knowledge graph is one of our chunks and the contexts
of its samples map back to chunk ids and document ids. ragas builds the graph (summaries, themes,
entities, personas, overlaps) and writes single- and multi-hop queries with reference answers; each
sample becomes a row of our eval JSONL (relevant_ids = the source chunks' documents, provenance
`generator: ragas` with its synthesizer, persona, style and chunk ids), counted through the filters
that apply to it: mapped back to our chunks (`parsed`), no answer leak, not a near-duplicate.

The model: ragas' prompts ask for long nested JSON; the local 135M model cannot write it (ragas #1775,
#2523), so a local model is refused with one error. A remote model is called through our `ChatModel`
(its key handling and error messages) with the output model's JSON schema as `response_format`, the
judge adapter's method. Embeddings: the spec's first embedder wrapped for ragas (no hub download).
"""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from workbench.data.synth_filters import SynthReport, leaks_answer, near_duplicates
from workbench.errors import ConfigError, ModelError
from workbench.rag.chat import ChatModel
from workbench.rag.chunking import Chunk
from workbench.scoring.metrics import normalize_answer
from workbench.scoring.ragas_adapters import RESPONSE_FORMAT_STYLES, make_embedding, response_format
from workbench.spec import ModelConfig
from workbench.spec_synth import SynthConfig

FILTERS = ("parsed", "no_answer_leak", "not_duplicate")
_HOP = re.compile(r"^<\d+-hop>\s*")  # ragas prefixes each multi-hop context with its hop


def refuse_local(writer: ModelConfig) -> None:
    if writer.provider == "local":
        raise ConfigError(
            f"synth.generator: ragas needs a capable model and {writer.model} (local) is not one: ragas' "
            "knowledge-graph prompts ask for long nested JSON that a 135M model cannot write. Set synth.model "
            "(or --model) to a remote OpenAI-compatible model, e.g. {provider: openai, model: gpt-4o-mini}, or use "
            "--generator workbench, which is built for the local model")


def chunk_budget(n: int, available: int) -> int:
    """How many chunks ragas gets: each costs ~4 model calls to build the graph, so twice the questions
    wanted (at least 8), spread over the documents by the stratified order."""
    return min(available, max(8, 2 * n))


def schema_llm(chat: ChatModel, provider: str) -> Any:
    """A ragas `InstructorBaseRagasLLM` over our ChatModel: the output model's schema as response_format."""
    from ragas.llms.base import InstructorBaseRagasLLM

    style = RESPONSE_FORMAT_STYLES[provider]

    class ChatSchemaLLM(InstructorBaseRagasLLM):
        is_async = True  # ragas' PydanticPrompt asks; agenerate is the one it then awaits

        def generate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            reply = chat.generate([{"role": "user", "content": prompt}],
                                  response_format=response_format(response_model, style))
            try:
                return response_model.model_validate_json(reply.text)
            except ValidationError as exc:
                raise ModelError(f"model {chat.cfg.model!r} at {chat.base_url} answered ragas' "
                                 f"{response_model.__name__} prompt with JSON of the wrong shape: "
                                 f"{str(exc).splitlines()[0]}") from None

        async def agenerate(self, prompt: str, response_model: type[BaseModel]) -> BaseModel:
            return await asyncio.to_thread(self.generate, prompt, response_model)

    return ChatSchemaLLM()


def generate_ragas(cfg: SynthConfig, chat: ChatModel, embedder: Any, order: list[Chunk], writer: ModelConfig,
                   *, timeout_s: float, concurrency: int) -> tuple[list[dict[str, Any]], SynthReport]:
    """Run ragas on the first `chunk_budget` chunks of `order`; map its samples to eval rows."""
    from langchain_core.documents import Document
    from ragas import __version__ as ragas_version
    from ragas.run_config import RunConfig
    from ragas.testset import TestsetGenerator

    refuse_local(writer)
    used = order[:chunk_budget(cfg.n, len(order))]
    docs = [Document(page_content=c.text, metadata={"chunk_id": c.id, "doc_id": c.doc_id}) for c in used]
    # ragas samples scenarios with the global `random` and `numpy.random`: seeded here, or no two runs agree
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    generator = TestsetGenerator(llm=schema_llm(chat, writer.provider), embedding_model=make_embedding(embedder))
    run = RunConfig(timeout=int(max(timeout_s, 1)), max_workers=max(1, min(concurrency, 16)), seed=cfg.seed,
                    max_retries=1)
    try:
        testset = generator.generate_with_chunks(docs, testset_size=cfg.n, run_config=run)
    except ModelError:
        raise
    except Exception as exc:  # ragas wraps failures in its own types; say what failed, once
        raise ModelError(f"ragas' TestsetGenerator failed with model {writer.model!r} at {chat.base_url}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                         "(a more capable model, or --generator workbench)") from None
    return map_samples(testset.samples, used, cfg, writer, embedder, ragas_version)


def map_samples(samples: list[Any], chunks: list[Chunk], cfg: SynthConfig, writer: ModelConfig, embedder: Any,
                ragas_version: str) -> tuple[list[dict[str, Any]], SynthReport]:
    """ragas' `TestsetSample`s as our eval rows: each reference context back to its chunk by its text."""
    by_text: dict[str, Chunk] = {}
    for c in chunks:
        by_text.setdefault(c.text, c)
    report = SynthReport(wanted=cfg.n, filters=FILTERS)
    rows: list[dict[str, Any]] = []
    kept: list[np.ndarray] = []
    for sample in samples:
        ev = sample.eval_sample
        question, answer = (ev.user_input or "").strip(), (ev.reference or "").strip()
        sources = [by_text.get(_HOP.sub("", ctx, count=1)) for ctx in (ev.reference_contexts or [])]
        style = sample.synthesizer_name
        candidate: dict[str, Any] = {"style": style, "question": question, "answer": answer}
        checks = {"parsed": bool(question and answer and sources and all(sources))}
        if checks["parsed"]:
            checks["no_answer_leak"] = not leaks_answer(question, answer, normalize_answer)
        if checks.get("no_answer_leak"):
            vector = np.asarray(embedder.embed([question]))[0]
            checks["not_duplicate"] = not near_duplicates(vector[None, :], cfg.duplicate_similarity,
                                                          np.stack(kept) if kept else None)[0]
        if not report.record(checks, style, candidate):
            continue
        kept.append(vector)
        ids = [c.id for c in sources]
        rows.append({
            "id": f"synth-ragas-{cfg.seed}-{len(rows):04d}",
            "question": question,
            "reference_answers": [answer],
            "relevant_ids": sorted({c.doc_id for c in sources}),
            "style": style,
            "provenance": {"generator": "ragas", "ragas_version": ragas_version, "synthesizer": style,
                           "model": writer.model, "provider": writer.provider, "seed": cfg.seed, "chunk_ids": ids,
                           "persona": ev.persona_name, "query_style": ev.query_style,
                           "query_length": ev.query_length, "filters": checks},
        })
    return rows, report
