"""How many model calls a sweep would make, and how many of them the generation cache already holds.

The cache key of a generation is (model config, exact messages); the messages need retrieval, i.e. built
indexes. The cheap, honest alternative used here: every earlier sweep's record (`<home>/sweeps/*/cells.jsonl`)
holds the exact messages each (variant, question) was sent. Over the same corpus (digest) the same variant
builds the same messages for the same question, so their generation keys are looked up in the real cache.
A cell no earlier sweep ran counts as new even when an identical request is cached under another variant
(one differing only in, say, embedding batch size): an estimate, never fewer new calls than a re-run makes
unless retrieval itself changed (e.g. another chromadb version ranks differently).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from workbench.rag.cache import ResultCache, generation_key
from workbench.runner.records import SweepRecord
from workbench.spec import SweepSpec
from workbench.spec_repeats import repeat_seed


@dataclass(frozen=True)
class CallCount:
    """Model calls of a sweep (generation, not the judge): `cached` of `total` are answered from the cache."""

    total: int
    cached: int
    basis: str  # how `cached` was found, for the label next to the numbers

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
    try:
        cached = sum(cache.get(key) is not None for key in keys)
    finally:
        cache.close()
    return CallCount(total, cached, "estimate from earlier sweeps' records, checked against the cache")


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
                     repeats: int = 1) -> list[str]:
    """The generation keys of every wanted (variant, question) some earlier sweep on this corpus sent: one
    per answer, repeat r asked with `repeat_seed` (so a cached answer 0 never counts for repeat 1)."""
    root = home / "sweeps"
    if not root.is_dir():
        return []
    found: dict[tuple[str, str], list[str]] = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        record = SweepRecord(directory)
        if (record.status().get("data") or {}).get("data.corpus.digest") != corpus_digest:
            continue
        for row in record.cells():
            cell = (row.get("variant_hash"), row.get("question_id"))
            variant = variants.get(cell[0])
            if cell in found or variant is None or variant.model is None or variant.model.provider == "routed" \
                    or not row.get("messages"):  # a routed cell made several calls: not one key
                continue
            if questions.get(cell[1]) != row.get("question") or row.get("error"):
                continue  # another question under the same id, or a failed call (never cached)
            found[cell] = [generation_key(_seeded(variant.model, r), row["messages"]) for r in range(repeats)]
    return [key for keys in found.values() for key in keys]


def _seeded(model, repeat: int):
    return model if repeat == 0 else model.model_copy(update={"seed": repeat_seed(model.seed, repeat)})
