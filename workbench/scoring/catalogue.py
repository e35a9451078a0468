"""The metric catalogue: every metric the workbench computes, declared once.

A `Metric` names a metric, says what it needs (`reference_answers`, `relevant_ids`, `contexts`,
`judge`), which way is better, what kind it is (retrieval, answer, judged) and how one cell is
scored: a function, or for a judged metric the ragas class the judge runs. Everything else is
derived from this catalogue: what `workbench.scoring.score` computes per cell, the metrics and
`<metric>_failed` counts of `aggregate()`, the quality metrics the tables, MLflow and the UI show,
the judge's metrics and the check of a spec's `judge.metrics`, and the direction `best()` and
`pareto()` optimise.

Adding a metric is one declaration: a `Metric(...)` in `BUILTIN` below, or `register(Metric(...))`
from a notebook or plugin. `registered(metric)` adds one for a `with` block only (tests).

Numbers a variant reports that no per-cell function scores (a router's `routed_share.<model>`, a
cascade's `escalation_rate`, a response cache's `cache_hit_rate`, `cost_usd_per_1k`, …) are declared
here too, as `Aggregate`s: their direction, fixed range and readable label, which `direction`, `bounds`
and `label` give for a metric or an aggregate alike (and the plots, MLflow's chart order, `best()` and
`pareto()` read). They are never scored per cell nor counted as quality metrics (`is_metric` is False).

>>> get("f1").better, sorted(get("f1").needs)
('higher', ['reference_answers'])
>>> get("ndcg_at_10").name      # a retrieval metric at an extra cut-off (`retrieval_cutoffs`)
'ndcg_at_10'
>>> names("judged")[:2]
['faithfulness', 'answer_relevancy']
>>> direction("escalation_rate"), direction("cache_hit_rate"), label("routed_share.large")
('min', 'max', 'share answered by large')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from workbench.errors import ConfigError
from workbench.scoring import metrics as fn

Kind = Literal["retrieval", "answer", "judged"]
KINDS: tuple[Kind, ...] = ("retrieval", "answer", "judged")
# What a metric can need: the eval set's columns, the retrieved contexts, an LLM judge.
INPUTS = frozenset({"reference_answers", "relevant_ids", "contexts", "judge"})
# What the judge hands a ragas metric, and the eval-set input each one needs (None: every cell has it).
JUDGE_INPUTS: Mapping[str, str | None] = {
    "question": None, "answer": None, "contexts": "contexts", "reference": "reference_answers"}


@dataclass(frozen=True)
class JudgeBinding:
    """How the judge computes a metric: a `ragas.metrics.collections` class and, for each argument of
    its `ascore`, the judge input passed (question, answer, contexts, reference)."""

    ragas: str
    args: tuple[tuple[str, str], ...]
    embeddings: bool = False  # built with our embedder (answer_relevancy compares questions)
    must_generate: str | None = None  # a reply field that must be non-empty, else no judgement (ragas says 0)

    @property
    def inputs(self) -> frozenset[str]:
        return frozenset(source for _, source in self.args)


@dataclass(frozen=True)
class Metric:
    """One metric. `fn` scores one cell:

    * retrieval: `fn(ranking, gains, k) -> float` over the document ranking and the positive grades
      (`metrics.relevant_gains`); a question without a relevant document is None, never scored.
      `cutoff_family="ndcg"` also computes `ndcg_at_<N>` for each of the spec's `retrieval_cutoffs`
      with `fn_at` (default `fn`).
    * answer: `fn(answer, reference_answers) -> float | None`.
    * judged: no `fn`; `judge` binds it to ragas. `needs` is derived from the binding.
    """

    name: str
    kind: Kind
    description: str
    better: Literal["higher", "lower"] = "higher"
    needs: frozenset[str] = frozenset()
    fn: Callable[..., float | None] | None = field(default=None, compare=False)
    cutoff_family: str | None = None
    fn_at: Callable[..., float | None] | None = field(default=None, compare=False)
    judge: JudgeBinding | None = None
    bounds: tuple[float, float] | None = None  # (low, high) when the score has fixed bounds: fixed plot/colour scales

    def __post_init__(self) -> None:
        if self.judge is not None and not self.needs:
            derived = {"judge"} | {JUDGE_INPUTS[i] for i in self.judge.inputs if JUDGE_INPUTS.get(i)}
            object.__setattr__(self, "needs", frozenset(derived))
        problem = self._problem()
        if problem:
            raise ValueError(f"metric {self.name!r}: {problem}")

    def _problem(self) -> str | None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            return "the name must be lower_snake_case (it becomes a column and an MLflow metric)"
        if self.kind not in KINDS:
            return f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}"
        if self.better not in ("higher", "lower"):
            return f"better must be 'higher' or 'lower', got {self.better!r}"
        if unknown := sorted(self.needs - INPUTS):
            return f"needs unknown input(s) {unknown}; known: {sorted(INPUTS)}"
        if self.kind == "judged":
            if self.judge is None or self.fn is not None:
                return "a judged metric has a judge binding and no fn"
            if unknown := sorted(self.judge.inputs - set(JUDGE_INPUTS)):
                return f"the judge binding passes unknown input(s) {unknown}; known: {sorted(JUDGE_INPUTS)}"
        elif self.fn is None or self.judge is not None:
            return f"a {self.kind} metric has an fn and no judge binding"
        if self.kind == "answer" and not self.needs <= {"reference_answers"}:
            return "an answer metric can need reference_answers only (its fn gets the answer and the references)"
        if self.kind == "retrieval" and "relevant_ids" not in self.needs:
            return "a retrieval metric needs relevant_ids"
        if self.bounds is not None and not (len(self.bounds) == 2 and self.bounds[0] < self.bounds[1]):
            return f"bounds must be (low, high) with low < high, got {self.bounds!r}"
        if self.cutoff_family is not None and (self.kind != "retrieval" or not self.cutoff_family.isidentifier()):
            return "only a retrieval metric has a cutoff_family, a name like 'ndcg'"
        return None

    def at(self, cutoff: int) -> str:
        """The column of this metric at an extra cut-off, e.g. `ndcg_at_10`."""
        return f"{self.cutoff_family}_at_{cutoff}"

    def score_at(self, ranking: Sequence[str], gains: Mapping[str, float], cutoff: int) -> float | None:
        return (self.fn_at or self.fn)(ranking, gains, cutoff)


_REF = frozenset({"reference_answers"})
_REL = frozenset({"relevant_ids"})


def _mrr(ranking: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    return fn.reciprocal_rank(ranking, gains)  # no cut-off: the rank anywhere in the ranking


def _mrr_at(ranking: Sequence[str], gains: Mapping[str, float], cutoff: int) -> float:
    return fn.reciprocal_rank(ranking, gains, cutoff)


def _judged(name: str, ragas: str, description: str, *, embeddings: bool = False, must_generate: str | None = None,
            **args: str) -> Metric:
    """A judged metric; `args` maps each ragas `ascore` argument to the judge input it is given."""
    return Metric(name, "judged", description,
                  judge=JudgeBinding(ragas, tuple(args.items()), embeddings=embeddings, must_generate=must_generate))


UNIT = (0.0, 1.0)

# Declaration order is the order of columns, aggregates and choices: retrieval, answer, judged.
_DECLARED: tuple[Metric, ...] = (
    Metric("hit_at_k", "retrieval", "1 if any relevant document is in the top k, else 0", needs=_REL,
           fn=fn.hit_at, cutoff_family="hit"),
    Metric("recall_at_k", "retrieval", "relevant documents in the top k / all relevant documents", needs=_REL,
           fn=fn.recall_at, cutoff_family="recall"),
    Metric("mrr", "retrieval", "1 / rank of the first relevant document (trec_eval recip_rank)", needs=_REL,
           fn=_mrr, cutoff_family="mrr", fn_at=_mrr_at),
    Metric("ndcg_at_k", "retrieval", "graded nDCG over the top k (trec_eval ndcg_cut)", needs=_REL,
           fn=fn.ndcg_at, cutoff_family="ndcg"),
    Metric("exact_match", "answer", "SQuAD v1.1 exact match after normalisation, max over references",
           needs=_REF, fn=fn.exact_match),
    Metric("f1", "answer", "SQuAD v1.1 token F1 after normalisation, max over references", needs=_REF,
           fn=fn.token_f1),
    Metric("rouge_l", "answer", "ROUGE-L F-measure as ragas computes it, max over references", needs=_REF,
           fn=fn.rouge_l),
    Metric("string_similarity", "answer", "1 - normalised Levenshtein distance as ragas computes it, max over "
           "references", needs=_REF, fn=fn.string_similarity),
    _judged("faithfulness", "Faithfulness", "share of the answer's claims the contexts support (ragas)",
            user_input="question", response="answer", retrieved_contexts="contexts"),
    _judged("answer_relevancy", "AnswerRelevancy",
            "similarity of the question to questions the judge derives from the answer (ragas)",
            embeddings=True, must_generate="question", user_input="question", response="answer"),
    _judged("context_precision", "ContextPrecision", "are the useful contexts ranked first (ragas, vs the reference)",
            user_input="question", reference="reference", retrieved_contexts="contexts"),
    _judged("context_recall", "ContextRecall", "share of the reference's claims found in the contexts (ragas)",
            user_input="question", retrieved_contexts="contexts", reference="reference"),
    _judged("factual_correctness", "FactualCorrectness", "claim-level F1 of the answer against the reference (ragas)",
            response="answer", reference="reference"),
)
BUILTIN: tuple[Metric, ...] = tuple(replace(m, bounds=UNIT) for m in _DECLARED)  # every built-in score is in [0, 1]

_registry: dict[str, Metric] = {m.name: m for m in BUILTIN}


@dataclass(frozen=True)
class Aggregate:
    """A number `aggregate()` (or a cell, `per="question"`) reports that no per-cell metric function scores:
    declared for its direction, fixed range and readable label. `name` ending in "." declares a family
    (`routed_share.` covers `routed_share.<model>`; its label gets the suffix)."""

    name: str
    label: str
    description: str
    better: Literal["higher", "lower"] | None  # None: neither way is better (which model answered)
    bounds: tuple[float, float] | None = None
    per: Literal["variant", "question"] = "variant"  # question: a 0/1 or amount per cell, compared per question

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*\.?", self.name or ""):
            raise ValueError(f"aggregate {self.name!r}: the name must be lower_snake_case (a family ends in '.')")


# A router's, cascade's and response cache's aggregates (scoring/routing_metrics.py computes them) and the
# projected cost; the per-question columns they come from.
AGGREGATES: tuple[Aggregate, ...] = (
    Aggregate("cost_usd_per_1k", "cost per 1,000 questions (USD)",
              "1,000 x the mean cost per question (a cascade pays for both calls); CI over questions", "lower"),
    Aggregate("routed_share.", "share answered by", "share of the answered questions the named model answered "
              "(`cache`: served from the response cache)", None, UNIT),
    Aggregate("escalation_rate", "escalation rate", "share of a cascade's questions escalated to its second model",
              "lower", UNIT),
    Aggregate("cache_hit_rate", "cache hit rate", "share of the query stream served from the response cache",
              "higher", UNIT),
    Aggregate("cache_wrong_hit_rate", "cache wrong-hit rate", "wrong hits / hits: a cached answer served for a "
              "question whose references differ", "lower", UNIT),
    Aggregate("cache_saved_usd_per_1k", "cost saved by the cache per 1,000 questions (USD)",
              "what the hits did not spend, per 1,000 questions of the stream", "higher"),
    Aggregate("cache_saved_s_mean", "generation time saved by the cache per question (s)",
              "the generation latency the hits did not spend, per question of the stream", "higher"),
    Aggregate("escalated", "escalated", "1 when the cascade escalated this question", "lower", UNIT, "question"),
    Aggregate("cache_wrong_hit", "wrong cache hit", "1 when a cached answer for a question with other references "
              "was served", "lower", UNIT, "question"),
    Aggregate("cache_saved_usd", "cost saved by the cache (USD)", "what the cached answer cost when it was made",
              "higher", None, "question"),
    Aggregate("cache_saved_s", "generation time saved by the cache (s)", "the cached answer's generation latency",
              "higher", None, "question"),
)
_aggregates: dict[str, Aggregate] = {a.name: a for a in AGGREGATES}


# ---------------------------------------------------------------- lookups


def all_metrics(kind: Kind | None = None) -> list[Metric]:
    """Registered metrics in declaration order, optionally of one kind."""
    return [m for m in _registry.values() if kind is None or m.kind == kind]


def names(kind: Kind | None = None) -> list[str]:
    return [m.name for m in all_metrics(kind)]


def _family_match(name: str) -> Metric | None:
    m = re.fullmatch(r"([a-z][a-z0-9_]*?)_at_(\d+)", name)
    if m is None or int(m.group(2)) < 1:
        return None
    return next((x for x in all_metrics("retrieval") if x.cutoff_family == m.group(1)), None)


def get(name: str) -> Metric:
    """The metric called `name`; a cut-off column (`ndcg_at_10`) gives its family's metric renamed."""
    if name in _registry:
        return _registry[name]
    family = _family_match(name)
    if family is None:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(_registry)} (and <family>_at_<N> cut-offs)")
    cutoff = int(name.rsplit("_at_", 1)[1])
    return replace(family, name=name, cutoff_family=None, fn_at=None,
                   fn=lambda ranking, gains, k=None: family.score_at(ranking, gains, cutoff))  # its k is its cut-off


def is_metric(name: str) -> bool:
    """Is `name` a registered metric or a retrieval metric at a cut-off?"""
    return name in _registry or _family_match(name) is not None


def aggregate_of(name: str) -> Aggregate | None:
    """The declared aggregate a column is (`routed_share.large`: its family), or None."""
    if name in _aggregates:
        return _aggregates[name]
    head, dot, tail = name.partition(".")
    return _aggregates.get(head + dot) if dot and tail else None


def is_aggregate(name: str) -> bool:
    return aggregate_of(name) is not None


def bounds(name: str) -> tuple[float, float] | None:
    """The fixed (low, high) range of a metric's or aggregate's value, or None when it has none (or is
    neither)."""
    if is_metric(name):
        return get(name).bounds
    agg = aggregate_of(name)
    return agg.bounds if agg is not None else None


def label(name: str) -> str | None:
    """The readable label of a declared aggregate (`escalation_rate` -> "escalation rate"; a family's
    member gets its suffix), a metric's own name, or None when the catalogue does not know `name`."""
    if is_metric(name):
        return name
    agg = aggregate_of(name)
    if agg is None:
        return None
    return f"{agg.label} {name[len(agg.name):]}" if agg.name.endswith(".") else agg.label


def error_of(name: str) -> str:
    """The row key holding why a judged metric has no value."""
    return f"{name}_error"


def direction(name: str) -> Literal["max", "min"]:
    """"max" when a higher value of the metric or aggregate `name` is better, else "min" (an aggregate no
    way is better for, e.g. `routed_share.<model>`, sorts highest first: "max")."""
    agg = None if is_metric(name) else aggregate_of(name)
    better = agg.better if agg is not None else get(name).better
    return "min" if better == "lower" else "max"


def quality_metrics(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metrics to show for these rows: retrieval and answer metrics (computable or not), then the
    retrieval metrics at extra cut-offs present (`ndcg_at_10`), then the judged metrics present."""
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    fixed = names("retrieval") + names("answer")
    cutoffs = sorted((k for k in present if k not in _registry and _family_match(k) is not None),
                     key=lambda k: (k.rsplit("_at_", 1)[0], int(k.rsplit("_at_", 1)[1])))
    return [*fixed, *cutoffs, *(j for j in names("judged") if j in present)]


# ---------------------------------------------------------------- adding metrics


def register(metric: Metric) -> Metric:
    """Add a metric to the catalogue (from a notebook or a plugin): it is then scored per cell,
    aggregated, logged to MLflow and offered in the UI like a built-in one."""
    from workbench.scoring.cell import Cell  # a metric's column must not shadow a cell field

    if not isinstance(metric, Metric):
        raise TypeError(f"register() takes a Metric, got {type(metric).__name__}")
    if is_metric(metric.name) or is_aggregate(metric.name):
        raise ValueError(f"metric {metric.name!r} is already in the catalogue")
    if metric.name in Cell.field_names() or metric.name.endswith("_error"):
        raise ValueError(f"metric {metric.name!r} would shadow a cell field; choose another name")
    _registry[metric.name] = metric
    return metric


def state() -> tuple[str, ...]:
    """The registered metrics' names, in order: what an aggregate computed earlier was computed with."""
    return tuple(_registry)


def unregister(name: str) -> None:
    if name not in _registry:
        raise KeyError(f"metric {name!r} is not in the catalogue")
    del _registry[name]


@contextmanager
def registered(*metrics: Metric) -> Iterator[tuple[Metric, ...]]:
    """Metrics in the catalogue for a `with` block only (a test adds one without leaking it)."""
    added: list[str] = []
    try:
        for metric in metrics:
            register(metric)
            added.append(metric.name)
        yield metrics
    finally:
        for name in added:
            _registry.pop(name, None)


# ---------------------------------------------------------------- checks a sweep runs first


def check_judge(spec: Any) -> None:
    """Raise ConfigError naming `judge.metrics` when the spec asks the judge for a metric the catalogue
    does not judge. The runner calls this at sweep start (the spec layer cannot see the catalogue)."""
    judge = getattr(spec, "judge", spec)
    if judge is None:
        return
    check_judge_metrics(judge.metrics)


def check_judge_metrics(requested: Sequence[str]) -> None:
    known = names("judged")
    unknown = [m for m in requested if m not in known]
    if unknown:
        shown = ", ".join(repr(m) for m in unknown)
        raise ConfigError(f"judge.metrics: unknown LLM-judged metric {shown}; known: {', '.join(known)}")


__all__ = ["AGGREGATES", "INPUTS", "JUDGE_INPUTS", "BUILTIN", "UNIT", "Aggregate", "JudgeBinding", "Metric",
           "aggregate_of", "all_metrics", "bounds", "check_judge", "check_judge_metrics", "direction", "error_of", "get",
           "is_aggregate", "is_metric", "label", "names", "quality_metrics", "register", "registered", "unregister"]
