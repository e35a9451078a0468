"""Synthetic eval sets from the spec's own corpus: `workbench synth SPEC --n 100 --out eval.jsonl`.

    from workbench.runner.synth import synthesize
    result = synthesize("experiments/quickstart.yaml", n=20, out="synth.jsonl", seed=1)
    print("\\n".join(result.report.lines()))

Chunks (the spec's first chunking) are taken stratified over documents (seeded, `stratified_sample`).
By default (`synth_span`) a seeded sentence of the chunk is the supporting span and a name, number or
date of it the answer, and the model (the `synth:` section's, else the spec's first) writes only the
question; `answer_from: model` lets it pick the answer from the sentence, `span: model` lets it copy the
span from the whole chunk too. Replies are schema-constrained JSON — the judge adapter's
`response_format`, so the local SmolLM2's grammar always yields JSON of that shape; one that does not
parse is asked once more. Each candidate then passes the filters in order (parsed,
grounded, no answer leak, not a near-duplicate by the spec's first embedding, optionally answerable),
each counted in the report. Output: the project's eval JSONL (relevant_ids = the chunk's document(s))
with provenance, and `<out stem>.report.json` beside it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from workbench.data.corpus import load_corpus
from workbench.data.synth_filters import (
    SynthReport, answer_from_span, answers_agree, grounded, leaks_answer, near_duplicates, span_in_chunk,
    stratified_sample, write_eval_jsonl,
)
from workbench.errors import ConfigError, DataError, ModelError
from workbench.rag.assemble import embedder_for
from workbench.rag.chat import ChatModel
from workbench.rag.chunking import Chunk, chunk_corpus
from workbench.runner.synth_ragas import generate_ragas, refuse_local
from workbench.runner.synth_span import (
    AskQ, SpanQA, ask_messages, ground_in_spans, pick_answer, pick_sentence, span_messages,
)
from workbench.scoring.metrics import normalize_answer, token_f1
from workbench.scoring.ragas_adapters import RESPONSE_FORMAT_STYLES, response_format
from workbench.spec import DEFAULT_TEMPLATE, ModelConfig, SweepSpec, load_spec, parse_model
from workbench.spec_synth import SynthConfig


log = logging.getLogger(__name__)


class GeneratedQA(BaseModel):
    """What the model must reply. The span comes first: a small model copies a sentence, then picks
    its answer from it, then asks; that order keeps the answer grounded."""

    span: str = Field(min_length=1, max_length=300, description="one sentence copied from the text")
    answer: str = Field(min_length=1, max_length=80, description="a short answer found in that sentence")
    question: str = Field(min_length=8, max_length=200, description="a question whose answer is the answer")


_ASK = {
    "factoid": "Copy one sentence of the text as span. Take a short fact from it (a name, number, date or "
               "place) as answer. Write a question, as question, that this fact answers without using its words.",
    "why_how": "Copy one sentence of the text as span. Take the reason or the way it describes as a short "
               "answer. Write a question starting with Why or How that this sentence answers.",
    "multi_chunk": "Copy one sentence of Text 1 as span. Take a short fact from it as answer. Write one "
                   "question, as question, about this fact that also names something from Text 2.",
}


@dataclass(frozen=True)
class SynthResult:
    path: Path | None
    rows: list[dict[str, Any]]
    report: SynthReport
    report_path: Path | None = None


def report_path_for(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".report.json")


# One worked example as an earlier chat turn: SmolLM2-135M copies a shape far better than it follows
# instructions, and as a turn of its own the example is not mistaken for the text. The instruction and
# the example are the same for every style and come first, the chunk and the style's ask last, so
# llama.cpp reuses the evaluated prefix from one call to the next.
_SYSTEM = ("You write quiz questions about a text. Reply in JSON: span is one sentence copied from the text, "
           "answer is a short answer found in that sentence, question is a question that answer answers.")
_EXAMPLE = [{"role": "user", "content": "Text:\nThe Eiffel Tower was finished in 1889 for the World's Fair in Paris."},
            {"role": "assistant", "content": json.dumps({"span": "The Eiffel Tower was finished in 1889",
                                                         "answer": "1889",
                                                         "question": "When was the Eiffel Tower finished?"})}]


def _messages(style: str, chunks: list[Chunk]) -> list[dict]:
    if style == "multi_chunk":
        text = f"Text 1:\n{chunks[0].text}\n\nText 2:\n{chunks[1].text}"
    else:
        text = f"Text:\n{chunks[0].text}"
    return [{"role": "system", "content": _SYSTEM}, *_EXAMPLE, {"role": "user", "content": f"{text}\n\n{_ASK[style]}"}]


def _partner(chunk: Chunk, pool: list[Chunk], embedder: Any, rng: random.Random) -> Chunk:
    """The most similar chunk of another document among a seeded handful (a question over both has
    something to connect); only those few are embedded, so a large corpus costs nothing extra."""
    others = [c for c in pool if c.doc_id != chunk.doc_id]
    candidates = rng.sample(others, min(8, len(others)))
    vectors = np.asarray(embedder.embed([chunk.text, *(c.text for c in candidates)]))
    return candidates[int(np.argmax(vectors[1:] @ vectors[0]))]


class _LazyEmbedder:
    """The spec's first embedder, loaded when the first question reaches the duplicate check."""

    def __init__(self, spec: SweepSpec, stack: ExitStack) -> None:
        self._spec, self._stack, self._inner = spec, stack, None

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._inner is None:
            self._inner = embedder_for(self._spec.space.embedding[0], Path(self._spec.home))
            self._stack.callback(getattr(self._inner, "close", lambda: None))
        return self._inner.embed(texts)


def synthesize(spec: str | Path | dict | SweepSpec, *, n: int | None = None, out: str | Path | None = None,
               seed: int | None = None, model: ModelConfig | None = None, base_url: str | None = None,
               answerability: bool | None = None, overwrite: bool = False, generator: str | None = None) -> SynthResult:
    """Grow an eval set from the spec's corpus (see the module doc). `base_url` points the model at a
    running server (else the local model is started when the model is local). `generator="ragas"`:
    ragas' TestsetGenerator on the same chunks (`workbench.runner.synth_ragas`)."""
    loaded = load_spec(spec)
    cfg = loaded.synth or SynthConfig()
    cfg = parse_model(SynthConfig, {**dict(cfg), **{k: v for k, v in {
        "n": n, "seed": seed, "answerability": answerability, "generator": generator}.items() if v is not None}},
        "synth")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not overwrite:  # before any model call
        raise DataError(f"{out_path}: the file exists; choose another --out (an eval set is never overwritten)")
    if out_path is not None and not out_path.parent.is_dir():
        raise DataError(f"{out_path}: the folder {out_path.parent} does not exist; create it or choose another --out")
    writer = model or cfg.model or loaded.space.model[0]
    writer = writer.model_copy(update={"max_tokens": cfg.max_tokens, "temperature": cfg.temperature})
    if cfg.generator == "ragas":
        refuse_local(writer)  # before any chunking or model start
        writer = writer.model_copy(update={"max_tokens": max(cfg.max_tokens, 1024)})  # ragas' summaries, personas
    corpus = load_corpus(loaded.data.corpus)
    chunks = chunk_corpus(corpus, loaded.space.chunking[0])
    if not chunks:
        raise DataError(f"{loaded.data.corpus.path}: the corpus has no text to make questions from")
    if "multi_chunk" in cfg.styles and len(corpus) < 2:
        raise ConfigError("synth.styles: multi_chunk needs a corpus of at least two documents; remove it")
    groups: dict[str, list[Chunk]] = {}
    for c in chunks:
        groups.setdefault(c.doc_id, []).append(c)
    order = stratified_sample(groups, cfg.seed)
    with ExitStack() as stack:
        url = base_url
        if url is None and writer.provider == "local":
            from workbench.rag.local_model import LocalModelServer

            url = stack.enter_context(LocalModelServer(log_dir=Path(loaded.home) / "logs")).base_url
        chat = ChatModel(writer, base_url=url, timeout=loaded.execution.timeout_s,
                         max_retries=loaded.execution.max_retries)
        embedder = _LazyEmbedder(loaded, stack)
        if cfg.generator == "ragas":
            rows, report = generate_ragas(cfg, chat, embedder, order, writer, timeout_s=loaded.execution.timeout_s,
                                          concurrency=loaded.execution.concurrency)
        else:
            rows, report = _generate(cfg, chat, embedder, order, chunks, writer)
    for row in rows:
        row["provenance"]["corpus_digest"] = corpus.digest
    result = SynthResult(None, rows, report)
    if out_path is not None:
        rpath = report_path_for(out_path)
        rpath.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        if not rows:  # an empty eval file would only fail later, in the loader
            raise DataError(f"no candidate passed the filters ({report.attempts} tried), so {out_path} was not "
                            f"written; see {rpath} for what each filter rejected (a larger model helps)")
        write_eval_jsonl(rows, out_path, overwrite=overwrite)
        result = SynthResult(out_path, rows, report, rpath)
    return result


def _generate(cfg: SynthConfig, chat: ChatModel, embedder: Any, order: list[Chunk], chunks: list[Chunk],
              writer: ModelConfig) -> tuple[list[dict[str, Any]], SynthReport]:
    rng = random.Random(cfg.seed)
    fmt_style = RESPONSE_FORMAT_STYLES[writer.provider]
    report = SynthReport(wanted=cfg.n)
    kept_vectors: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    budget = cfg.max_attempts or 3 * cfg.n
    deadline = time.monotonic() + cfg.max_wall_s if cfg.max_wall_s else None
    for attempt in range(budget):
        if len(rows) >= cfg.n:
            break
        if deadline is not None and time.monotonic() > deadline:
            report.stopped = f"max_wall_s ({cfg.max_wall_s:g} s) reached after {attempt} candidates"
            break
        style = cfg.styles[attempt % len(cfg.styles)]
        first = order[attempt % len(order)]
        used = [first]
        if style == "multi_chunk":
            used.append(_partner(first, chunks, embedder, rng))
        call_seed = cfg.seed * 1_000_003 + attempt  # each call its own seed: varied, and reproducible
        checks: dict[str, bool] = {}
        candidate: dict[str, Any] = {"style": style, "chunk_ids": [c.id for c in used]}
        given = None
        if cfg.span == "chunk":  # we pick the sentence, the model answers and asks (synth_span)
            spans = [pick_sentence(c, random.Random(call_seed + i)) for i, c in enumerate(used)]
            messages, schema = span_messages(style, spans), SpanQA
            if cfg.answer_from == "span":  # and the answer: a name, number or date of it; the model only asks
                given = spans[0] if style == "why_how" else pick_answer(spans[0], random.Random(call_seed))
                if given is not None:
                    messages, schema = ask_messages(style, spans, given), AskQ
        else:
            spans, messages, schema = [], _messages(style, used), GeneratedQA
        qa, error = _ask(chat, messages, response_format(schema, fmt_style), schema, call_seed, cfg.max_tokens)
        if error is not None and cfg.retry_parse:  # a second try, its own seed and more room
            report.retries += 1
            qa, error = _ask(chat, messages, response_format(schema, fmt_style), schema, call_seed + 500_000_003,
                             cfg.max_tokens + 64)
        checks["parsed"] = qa is not None
        if qa is None:
            candidate["error"] = error
            report.record(checks, style, candidate)
            continue
        question, answer = qa.question.strip(), given if given is not None else qa.answer.strip()
        span = " ".join(spans) if spans else qa.span.strip()
        candidate.update(question=question, answer=answer, span=span)
        texts = [c.text for c in used]
        if spans:
            answer, source = ground_in_spans(answer, spans, question)
        else:
            answer, span, source = _ground(style, question, answer, span, texts)
        candidate["answer_from"] = source
        checks["grounded"] = source is not None
        checks["no_answer_leak"] = not leaks_answer(question, answer, normalize_answer)
        vector = None
        if checks["grounded"] and checks["no_answer_leak"]:
            vector = np.asarray(embedder.embed([question]))[0]
            kept = np.stack(kept_vectors) if kept_vectors else None
            checks["not_duplicate"] = not near_duplicates(vector[None, :], cfg.duplicate_similarity, kept)[0]
            if checks["not_duplicate"] and cfg.answerability:
                checks["answerable"] = _answerable(chat, question, answer, texts)
        accepted = report.record(checks, style, candidate)
        log.info("candidate %d (%s): %s; %d of %d accepted | %s", report.attempts, style,
                 "accepted" if accepted else "rejected by " + next(k for k, v in checks.items() if not v),
                 report.accepted, report.attempts, json.dumps({k: candidate.get(k) for k in (
                     "question", "answer", "span", "answer_from", "error") if candidate.get(k)})[:400])
        if not accepted:
            continue
        kept_vectors.append(vector)
        rows.append({
            "id": f"synth-{cfg.seed}-{len(rows):04d}",
            "question": question,
            "reference_answers": [answer],
            "relevant_ids": sorted({c.doc_id for c in used}),
            "style": style,
            "provenance": {"generator": "workbench", "model": writer.model, "provider": writer.provider,
                           "seed": cfg.seed, "call_seed": call_seed, "chunk_ids": [c.id for c in used],
                           "span": span, "answer_from": source, "filters": checks},
        })
    return rows, report


def _ask(chat: ChatModel, messages: list[dict], fmt: dict, schema: type[BaseModel], seed: int, max_tokens: int
         ) -> tuple[Any, str | None]:
    """One schema-constrained call: the parsed reply, or None and why (cut off at max_tokens, a field
    out of bounds)."""
    try:
        reply = chat.generate(messages, response_format=fmt, seed=seed, max_tokens=max_tokens)
        return schema.model_validate_json(reply.text), None
    except (ValidationError, ValueError) as exc:
        return None, str(exc).splitlines()[0][:200]


def _ground(style: str, question: str, answer: str, span: str, texts: list[str]) -> tuple[str, str, str | None]:
    """(answer, span, where the answer came from) — "model" when the chunk holds the model's answer;
    "span" when the span (nearly) copies a chunk sentence and the answer is taken from that sentence
    (the longest run of the answer's words in it; a why/how answer is that sentence's paraphrase and
    is kept); None when neither grounds it."""
    if grounded(answer, span, texts, normalize_answer, answer_verbatim=style != "why_how"):
        return answer, span, "model"
    sentence = span_in_chunk(span, texts)
    if sentence is None:
        return answer, span, None
    if style == "why_how":
        return answer, sentence, "span"
    taken = answer_from_span(answer, sentence)
    return (taken, sentence, "span") if taken else (answer, span, None)


def _answerable(chat: ChatModel, question: str, answer: str, texts: list[str]) -> bool:
    """The model answers from the chunk(s) alone (the default RAG prompt, greedy); it must agree."""
    prompt = DEFAULT_TEMPLATE.format(context="\n\n".join(texts), question=question)
    reply = chat.generate([{"role": "user", "content": prompt}], temperature=0.0, max_tokens=32)
    return answers_agree(answer, reply.text, normalize_answer, token_f1)
