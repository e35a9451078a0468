"""What a sweep would cost: `estimate(spec)` (calls, judge calls, tokens, USD, wall; `runner.forecast` does the
arithmetic) and `count_calls`, how many model calls it would make and how many the generation cache holds.

Tokens come from the real prompts: a seeded sample of questions is retrieved for every (chunking, embedding,
retrieval, prompt) and rendered, then counted with each model's tokenizer (`runner.tokens`). Retrieval needs
the indexes: `estimate` builds them as a sweep would (they are shared, so the sweep then reuses them).

The cache key of a generation is (model config, exact messages); the messages need retrieval, i.e. built
indexes. The cheap, honest alternative used here: every earlier sweep's record (`<home>/sweeps/*/cells.jsonl`)
holds the exact messages each (variant, question) was sent. Over the same corpus (digest) the same variant
builds the same messages for the same question, so their generation keys are looked up in the real cache.
A cell no earlier sweep ran counts as new even when an identical request is cached under another variant
(one differing only in, say, embedding batch size): an estimate, never fewer new calls than a re-run makes
unless retrieval itself changed (e.g. another chromadb version ranks differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path
import random
from typing import TYPE_CHECKING, Any, Iterable

from workbench.errors import StorageError
from workbench.files import write_atomically
from workbench.rag.cache import ResultCache, generation_key
from workbench.runner.forecast import Estimate, Observed, PromptSample, Range, VariantLoad, forecast_figures, latency_range, model_key
from workbench.runner.records import SweepRecord
from workbench.spec import ModelConfig, SweepSpec, VariantConfig
from workbench.spec_repeats import for_repeat
from workbench.spec_routing import chat_configs

if TYPE_CHECKING:
    from workbench.runner.inputs import SweepInputs
    from workbench.runner.workspace import Workspace

# Calls ragas makes per judged cell and metric (faithfulness: statements, then verdicts; context precision:
# one per retrieved context); any other metric one.
_JUDGE_CALLS = {"faithfulness": 2}


@dataclass(frozen=True)
class CallCount:
    """Model calls of a sweep (generation, not the judge): `cached` of `total` are answered from the cache."""

    total: int
    cached: int
    basis: str  # how `cached` was found, for the label next to the numbers
    cached_by_variant: dict[str, int] = field(default_factory=dict, compare=False)  # variant hash -> cached cells

    @property
    def new(self) -> int:
        return self.total - self.cached


def count_calls(spec: SweepSpec, corpus_digest: str, questions: Iterable[tuple[str, str]]) -> CallCount:
    """The spec's generation calls split into new and cached, for the eval set's (id, question) pairs over
    the corpus with `corpus_digest`. Reads sweep records and the cache; writes nothing."""
    questions = dict(questions)
    if spec.stage != "generate":
        return CallCount(0, 0, "retrieval only: no model calls")
    variants = {v.hash: v for v in spec.variants()}
    repeats = spec.repeats.generation  # each answer its own call and cache entry (spec_repeats.repeat_seed)
    total = len(variants) * len(questions) * repeats
    if not spec.execution.cache:
        return CallCount(total, 0, "the cache is off: every call is new")
    home = Path(spec.home)
    keys = _generation_keys(home, variants, questions, corpus_digest, repeats)
    cache_dir = home / "cache" / "generations"
    if not keys or not cache_dir.is_dir():
        return CallCount(total, 0, "estimate: no earlier sweep of these variants on this corpus")
    cache = ResultCache(cache_dir)
    by_variant: dict[str, int] = {}
    try:
        for (variant_hash, _, _), key in keys.items():
            if cache.get(key) is not None:
                by_variant[variant_hash] = by_variant.get(variant_hash, 0) + 1
    finally:
        cache.close()
    return CallCount(total, sum(by_variant.values()), "estimate from earlier sweeps' records, checked against the cache",
                     by_variant)


def records_signature(home: Path) -> tuple:
    """Changes when a sweep record is added or grows: (name, size, mtime) of every cells.jsonl."""
    root = home / "sweeps"
    if not root.is_dir():
        return ()
    out = []
    for cells in sorted(root.glob("*/cells.jsonl")):
        st = cells.stat()
        out.append((cells.parent.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _generation_keys(home: Path, variants: dict, questions: dict[str, str], corpus_digest: str,
                     repeats: int = 1) -> dict[tuple[str, str, int], str]:
    """The generation key of every wanted (variant, question, answer) some earlier sweep on this corpus sent:
    repeat r asked with `repeat_seed` (so a cached answer 0 never counts for repeat 1)."""
    root = home / "sweeps"
    if not root.is_dir():
        return {}
    found: dict[tuple[str, str, int], str] = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        record = SweepRecord(directory)
        if (record.status().get("data") or {}).get("data.corpus.digest") != corpus_digest:
            continue
        for row in record.cells():
            cell = (row.get("variant_hash"), row.get("question_id"))
            variant = variants.get(cell[0])
            if (*cell, 0) in found or variant is None or variant.model is None or variant.model.provider == "routed" \
                    or not row.get("messages"):  # a routed cell made several calls: not one key
                continue
            if questions.get(cell[1]) != row.get("question") or row.get("error"):
                continue  # another question under the same id, or a failed call (never cached)
            for r in range(repeats):
                found[(*cell, r)] = generation_key(for_repeat(variant.model, r), row["messages"])
    return found


def estimate(spec: Any, *, limit: int | None = None, sample: int = 8, seed: int = 0, latency_s: float | None = None,
             probe: int = 0) -> Estimate:
    """What running `spec` would cost: variants, model and judge calls, prompt and completion tokens, USD and
    wall time, each figure {low, expected, high}; cells the generation cache holds are free.

    sample: questions rendered and counted per (chunking, embedding, retrieval, prompt), the same seeded
      sample for each. latency_s: seconds per model call (else probed, else what earlier sweeps measured).
    probe: make N real calls per model to measure its latency (opt-in: they are billed like any call).

    >>> workbench.estimate("experiments/quickstart.yaml").to_dict()["model_calls"]   # doctest: +SKIP
    """
    from workbench.runner.inputs import SweepInputs, with_overrides
    from workbench.runner.workspace import Workspace
    from workbench.spec import load_spec

    if sample < 1:
        from workbench.errors import ConfigError

        raise ConfigError(f"sample (--sample): give how many questions to render per prompt, 1 or more; got {sample!r}")
    spec = with_overrides(load_spec(spec), None, limit, False)
    from workbench.scoring import catalogue

    catalogue.check_judge(spec)  # a misspelt judge metric is the same error as `workbench run` gives
    inputs = SweepInputs.load(spec)
    count = count_calls(spec, inputs.corpus.digest, [(i.id, i.question) for i in inputs.evalset.items])
    observed = observe(inputs.home)
    ws = Workspace(home=inputs.home, corpus=inputs.corpus)
    prompts = sample_prompts(inputs, ws, sample, seed)
    latency = {}
    if latency_s is not None:
        from workbench.errors import ConfigError

        if not latency_s > 0:
            raise ConfigError(f"latency_s (--latency): give seconds per model call, more than 0; got {latency_s!r}")
        latency = {key: Range(latency_s * 0.8, latency_s, latency_s * 1.5) for key in _endpoints(inputs)}
    elif probe:
        from workbench.runner.probe import probe_latency

        latency = probe_latency(inputs, prompts, probe)
    return build_estimate(inputs, count, prompts, observed, latency, "configured" if latency_s is not None
                          else f"probed ({probe} calls per model)" if probe else "")


def build_estimate(inputs: SweepInputs, count: CallCount, prompts: dict[str, list[list[dict]]],
                   observed: dict[str, Observed], latency: dict[str, Range], latency_basis: str = "") -> Estimate:
    """The estimate from what was gathered (a sweep calls this at its end with the count it took at its start)."""
    from workbench.runner.estimate_routed import prompt_counter, routed_history, routed_loads
    from workbench.runner.routed_cells import items_for
    from workbench.runner.tokens import counter_for

    spec, variants = inputs.spec, inputs.variants
    questions = len(inputs.evalset)
    answers = questions * spec.repeats.generation
    notes: list[str] = []
    loads, hows = [], set()
    routed = [v for v in variants if v.model is not None and v.model.provider == "routed"]
    routed_hashes = {v.hash for v in routed}
    history = routed_history(inputs.home, inputs.corpus.digest, routed_hashes) if routed else {}
    model_calls = float(count.new)
    for v in routed:  # each of its named models: calls per cell as bounds (runner.estimate_routed)
        stream = len(items_for(v, inputs.evalset.items))
        routed_calls, calls, note = routed_loads(v, stream * spec.repeats.generation, questions, stream,
                                                 prompt_counter(prompts.get(v.hash), questions, hows), history.get(v.hash))
        loads += routed_calls
        model_calls += calls[1] - answers  # count_calls counted one call per question for it
        notes.append(f"{note}: {calls[0]:.0f} to {calls[2]:.0f} model calls, expected {calls[1]:.0f}")
        if not prompts.get(v.hash):
            notes.append(f"variant {v.short_hash}: no prompt could be rendered (its index is not built)")
    first_plain = len(loads)  # the plain variants' loads follow, one each
    for v in variants:
        if v.model is None or v.hash in routed_hashes:
            continue
        new = answers - count.cached_by_variant.get(v.hash, 0) if spec.execution.cache else answers
        sampled = prompts.get(v.hash)
        prompt = None
        if sampled:
            counter = counter_for(v.model)
            hows.add(counter.how)
            prompt = PromptSample(tuple(counter.count(m) for m in sampled), questions, counter.exact)
        else:
            notes.append(f"variant {v.short_hash}: no prompt could be rendered (its index is not built)")
        loads.append(VariantLoad(v.model, new, prompt))
    if not latency:
        latency = _observed_latency(inputs, observed)
        latency_basis = "observed in earlier sweeps" if latency else ""
    prompt, completion, usd, wall, basis, more = forecast_figures(
        loads, observed, spec.execution, latency, lambda m: endpoint_of(m, spec.execution))
    basis = {"model_calls": count.basis,
             "prompt_tokens": f"{min((len(p) for p in prompts.values()), default=0)} sampled prompts per variant "
                              f"counted with {', '.join(sorted(hows)) or 'no tokenizer'}",
             **basis, "usd": "configured prices, genai-prices, 0 for the local model",
             "wall_s": f"latency {latency_basis or 'unknown'}; concurrency and rate limits per endpoint; model calls only"}
    judge_calls = 0
    if spec.judge is not None:
        metrics = spec.judge.metrics
        for v, load in zip((v for v in variants if v.model is not None and v.hash not in routed_hashes), loads[first_plain:]):
            per_cell = sum(v.retrieval.k if m == "context_precision" else _JUDGE_CALLS.get(m, 1) for m in metrics)
            judge_calls += load.new_cells * per_cell * spec.repeats.judge  # every judge pass judges every answer
        for v in routed:  # a routed variant's answers are judged like any (its stream's every cell)
            per_cell = sum(v.retrieval.k if m == "context_precision" else _JUDGE_CALLS.get(m, 1) for m in metrics)
            judge_calls += len(items_for(v, inputs.evalset.items)) * spec.repeats.generation * per_cell * spec.repeats.judge
        notes.append("judge calls: ragas' calls per metric (faithfulness 2, context_precision one per context, others 1); "
                     "the judge's tokens, USD and time are not in the other figures")
    return Estimate(len(variants), questions, round(model_calls), count.cached, judge_calls, prompt, completion, usd, wall,
                    notes + list(dict.fromkeys(more)), basis)


def endpoint_of(model: ModelConfig, execution) -> tuple[str, int]:
    """(endpoint key, its concurrency): the sweep's executor limits each endpoint on its own."""
    if model.provider == "local":
        return "local", execution.local_concurrency
    from workbench.rag.chat import OPENAI_BASE_URL

    return model.base_url or OPENAI_BASE_URL, execution.concurrency


def _endpoints(inputs: SweepInputs) -> set[str]:
    return {endpoint_of(m, inputs.spec.execution)[0] for v in inputs.variants for m in chat_configs(v.model)}


def _observed_latency(inputs: SweepInputs, observed: dict[str, Observed]) -> dict[str, Range]:
    out: dict[str, list[float]] = {}
    for m in (m for v in inputs.variants for m in chat_configs(v.model)):  # a routed variant: each named model
        seen = observed.get(model_key(m))
        if seen is not None and seen.latency_s:
            out.setdefault(endpoint_of(m, inputs.spec.execution)[0], []).extend(seen.latency_s)
    return {key: latency_range(values) for key, values in out.items()}


def sample_prompts(inputs: SweepInputs, ws: Workspace, sample: int, seed: int = 0,
                   built_only: bool = False, only: set[str] | None = None) -> dict[str, list[list[dict]]]:
    """Variant hash -> the rendered messages of a seeded sample of questions (the same questions for every
    variant; each (index, retrieval, prompt) retrieved and rendered once). built_only: skip variants whose
    index the workspace has not opened (a sweep stopped before them builds nothing for its estimate).
    only: these variant hashes (None: all)."""
    from workbench.rag.assemble import build_pipeline
    from workbench.runner.workspace import needs_dense

    items = list(inputs.evalset.items)
    chosen = random.Random(seed).sample(items, min(sample, len(items)))
    out: dict[str, list[list[dict]]] = {}
    for v in inputs.variants:
        if v.model is None or (only is not None and v.hash not in only) or (built_only and not ws.has_index(v)):
            continue
        index = ws.open_dense(v) if needs_dense(v) else ws.index(v)
        pipe = build_pipeline(v, index, None)
        out[v.hash] = [pipe.messages(item.question, ws.retrieve(pipe, item)[0]) for item in chosen]
    return out


def observe(home: Path) -> dict[str, Observed]:
    """Model key -> completion tokens and call latencies earlier sweeps measured (answers not from the cache)."""
    root = home / "sweeps"
    if not root.is_dir():
        return {}
    tokens: dict[str, list[int]] = {}
    latency: dict[str, list[float]] = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        for key, (toks, secs) in _observed_in(directory).items():
            tokens.setdefault(key, []).extend(toks)
            latency.setdefault(key, []).extend(secs)
    return {k: Observed(tuple(tokens.get(k, ())), tuple(latency.get(k, ()))) for k in set(tokens) | set(latency)}


OBSERVED = "observed.json"  # a sweep record's measured tokens and latencies, kept beside cells.jsonl


def _observed_in(directory: Path) -> dict[str, tuple[list[int], list[float]]]:
    """One sweep record's model key -> (completion tokens, call latencies), from `observed.json` while it matches
    cells.jsonl (size, mtime), else read from the record and kept there: every run's start reads every earlier
    record, and parsing each one's cells and spec again (~0.1 s per 800-cell sweep) grew with the history."""
    stamp = _stamp(directory)
    if stamp is None:
        return {}
    kept = directory / OBSERVED
    try:
        data = json.loads(kept.read_text(encoding="utf-8"))
        if data.get("cells") == stamp:
            return {k: (v[0], v[1]) for k, v in data["models"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        pass  # none yet, or stale or damaged: read the record
    try:
        old = SweepSpec.model_validate_json((directory / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # another version's record, or a damaged one: it tells us nothing reliable
    out = _measured(old.variants(), SweepRecord(directory).cells())
    _keep(kept, stamp, out)
    return out


def keep_observed(directory: Path, variants: Iterable[VariantConfig], rows: Iterable[dict[str, Any]]) -> None:
    """Write `observed.json` for the record in `directory` from `rows`, the cells its sweep just wrote (its
    cells.jsonl closed), so the next run's start does not parse the record for it."""
    stamp = _stamp(directory)
    if stamp is not None:
        _keep(directory / OBSERVED, stamp, _measured(variants, rows))


def _stamp(directory: Path) -> list[int] | None:
    """(size, mtime) of the record's cells.jsonl, which `observed.json` must match; None without one."""
    try:
        st = (directory / "cells.jsonl").stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _measured(variants: Iterable[VariantConfig], rows: Iterable[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Model key -> (completion tokens, call latencies) of the cells that were model calls."""
    models = {v.hash: model_key(v.model) for v in variants if v.model is not None}
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        key = models.get(row.get("variant_hash"))
        if key is None or row.get("error") or row.get("cached") is not False:
            continue
        toks, secs = out.setdefault(key, ([], []))
        if isinstance(row.get("tokens_completion"), int):
            toks.append(row["tokens_completion"])
        if isinstance(row.get("latency_generate_s"), (int, float)):
            secs.append(float(row["latency_generate_s"]))
    return out


def _keep(path: Path, stamp: list[int], measured: dict[str, tuple[list[int], list[float]]]) -> None:
    try:
        write_atomically(path, json.dumps({"cells": stamp, "models": measured}))
    except StorageError:  # write_atomically's one error (a read-only or full disk): read the record next time
        pass
