"""What one sweep starts from: the spec, its loaded data and variants, and the caller's hooks."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from workbench.data.corpus import Corpus, load_corpus
from workbench.data.evalset import EvalSet, load_eval
from workbench.errors import ConfigError, WorkbenchError
from workbench.scoring.score import missing_inputs
from workbench.spec import SweepSpec, VariantConfig


@dataclass(frozen=True)
class SweepInputs:
    """The spec with its corpus, eval set and variants loaded (digests in `data_info`)."""

    spec: SweepSpec
    corpus: Corpus
    evalset: EvalSet
    variants: tuple[VariantConfig, ...]

    @classmethod
    def load(cls, spec: SweepSpec) -> SweepInputs:
        check_repeats(spec)
        corpus = load_corpus(spec.data.corpus)
        return cls(spec, corpus, load_eval(spec.data.eval, corpus), tuple(spec.variants()))

    @property
    def home(self) -> Path:
        return Path(self.spec.home)

    @property
    def total_cells(self) -> int:
        """Every cell the sweep answers: a response cache's variant replays each question with its repeats
        and paraphrases (`data.query_stream`), and `repeats.generation` asks each one N times."""
        def per_question(v) -> int:
            cache = getattr(v.model, "cache", None)
            return 1 if cache is None else 1 + cache.repeats + cache.paraphrases
        return sum(per_question(v) for v in self.variants) * len(self.evalset) * self.spec.repeats.generation

    @property
    def data_info(self) -> dict[str, Any]:
        return {
            "data.corpus.digest": self.corpus.digest,
            "data.corpus.documents": len(self.corpus),
            "data.eval.digest": self.evalset.digest,
            "data.eval.questions": len(self.evalset),
        }

    def eval_rows(self) -> list[dict[str, Any]]:
        """The eval set's rows, MLflow's evaluation dataset (the tracker makes the DataFrame in its process)."""
        return [{"id": i.id, "question": i.question, "reference_answers": list(i.reference_answers),
                 "relevant_ids": list(i.relevant_ids)} for i in self.evalset.items]

    def notes(self) -> list[str]:
        """Which metrics cannot be computed for this eval set, and why (they are left out, never 0)."""
        spec, evalset = self.spec, self.evalset
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
        kmax = min(v.retrieval.k for v in self.variants)
        deep = [c for c in spec.retrieval_cutoffs if c > kmax]
        if deep:
            notes.append(f"cut-offs {deep} exceed the smallest k ({kmax}): those metrics only see the k retrieved chunks")
        greedy = [v.short_hash for v in self.variants  # a routed model has no single temperature
                  if v.model is not None and getattr(v.model, "temperature", None) == 0]
        if spec.repeats.generation > 1 and greedy:
            notes.append(f"repeats.generation {spec.repeats.generation} at temperature 0 ({', '.join(greedy)}): "
                         "greedy answers barely differ between seeds, so their generation variance is near 0")
        return notes


@dataclass(frozen=True)
class Hooks:
    """How the caller watches and steers a sweep (the CLI's bar, the notebook's live table and cancel)."""

    progress: bool = True
    on_cell: Callable[[dict[str, Any]], None] | None = None
    on_start: Callable[[dict[str, Any]], None] | None = None
    cancel: threading.Event | None = None
    on_search: Callable[[dict[str, Any]], None] | None = None  # a search's rung finished: rungs, survivors, stopped

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


def check_repeats(spec: SweepSpec) -> None:
    """`repeats` that cannot mean anything for this spec: one clear error before any work."""
    if spec.stage == "retrieve" and spec.repeats.generation > 1:
        raise ConfigError(f"repeats.generation is {spec.repeats.generation} but stage 'retrieve' makes no answers to "
                          "repeat (retrieval is deterministic): remove repeats or set stage: generate")
    if spec.repeats.judge > 1 and spec.judge is None:
        raise ConfigError(f"repeats.judge is {spec.repeats.judge} but the spec has no judge: add a `judge:` section "
                          "or remove repeats.judge")


def with_overrides(spec: SweepSpec, tracking_uri: str | None, limit: int | None, no_cache: bool) -> SweepSpec:
    """The spec with the CLI's / caller's overrides applied."""
    if tracking_uri:
        spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"tracking_uri": tracking_uri})})
    if limit is not None:
        if limit < 1:
            raise WorkbenchError(f"--limit must be at least 1, got {limit}")
        data = spec.data.model_copy(update={"eval": spec.data.eval.model_copy(update={"limit": limit})})
        spec = spec.model_copy(update={"data": data})
    if no_cache:
        spec = spec.model_copy(update={"execution": spec.execution.model_copy(update={"cache": False})})
    return spec
