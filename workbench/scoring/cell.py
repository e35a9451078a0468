"""One result per variant × question: the typed `Cell` and its flat row.

The flat row (a dict) is what `results.questions()`, `<home>/sweeps/<id>/cells.jsonl` and MLflow's
`eval_results` table hold. `Cell.from_row(row).to_row() == row` for every row the runner writes, key
order included, so cells.jsonl files written before the Cell existed resume unchanged and new ones
are byte-identical. A key a row does not have stays absent (`ABSENT`), which is not None: a
retrieval-only cell has no `answer` key, a failed one has `answer: None`.

The row lists its keys stage by stage as the runner fills them (identity, retrieval, generation,
scoring); the fields below are declared in the order the `eval_results` table shows them. Column
lists elsewhere are derived from this declaration and the metric catalogue, never kept by hand:
`table_columns()` / `NOT_IN_TABLE` (MLflow's table), `DESCRIPTIVE` (what describes rather than
scores a cell: `stats.NON_SCORE_COLUMNS`) and `MEASURES` (latency, tokens, cost: lower is better).

>>> cell = Cell(variant_hash="ab12", variant="ab12", question_id="q1", question="Who?", error=None)
>>> cell.with_scores({"f1": 0.5}).to_row()
{'variant_hash': 'ab12', 'variant': 'ab12', 'question_id': 'q1', 'question': 'Who?', 'error': None, 'f1': 0.5}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.scoring import catalogue

STAGES = ("identity", "retrieval", "generation", "scoring")  # the order a row lists its keys


class _Absent:
    """A row key that is not there (distinct from a key holding None)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"  # pickles as the same singleton


ABSENT: Any = _Absent()


def _f(stage: str, *, table: bool = True, measure: Literal["latency", "tokens", "cost"] | None = None,
       required: bool = False) -> Any:
    meta = {"stage": stage, "table": table, "measure": measure}
    return field(metadata=meta) if required else field(default=ABSENT, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One variant's result for one question. Fields are declared in the eval_results table's order."""

    variant_hash: str = _f("identity", table=False, required=True)
    variant: str = _f("identity", table=False, required=True)  # the short hash
    question_id: str = _f("identity", required=True)
    question: str = _f("identity", required=True)
    repeat: int = _f("identity")  # which answer to the question (spec `repeats`); absent without repeats, i.e. 0
    messages: list[dict] = _f("generation", table=False)  # the prompt sent; absent when retrieval only
    answer: str | None = _f("generation")  # None when generation failed
    cached: bool = _f("generation")  # the answer came from the generation cache
    reference_answers: list[str] = _f("identity")
    relevant_ids: list[str] = _f("identity")
    retrieved_doc_ids: list[str] = _f("scoring")  # document ranking (a document at its first chunk)
    retrieved_chunk_ids: list[str] = _f("retrieval")
    retrieved_chunk_doc_ids: list[str] = _f("retrieval")
    contexts: list[str] = _f("retrieval")
    started_at_ns: int = _f("retrieval", table=False)  # wall clock, for the trace
    latency_retrieve_s: float = _f("retrieval", measure="latency")
    latency_generate_s: float = _f("generation", measure="latency")
    latency_total_s: float | None = _f("retrieval", measure="latency")  # None when generation failed
    tokens_prompt: int | None = _f("generation", measure="tokens")
    tokens_completion: int | None = _f("generation", measure="tokens")
    cost_usd: float | None = _f("generation", measure="cost")  # None: unknown price, never "free"
    # A routed variant (spec_routing): the named model that answered ("cache" for a cache hit), a cascade's
    # decision, the signal it compared, and every model call with its tokens, cost and latency.
    routed_to: str = _f("generation")
    escalated: bool | None = _f("generation")
    route_signal: float | None = _f("generation")
    route_calls: list[dict] = _f("generation", table=False)
    cache_hit: str | None = _f("generation")  # "exact" | "semantic" | None (a miss)
    cache_wrong_hit: bool | None = _f("generation")  # the cached answer was for a question with other references
    cache_saved_usd: float | None = _f("generation")  # what the served answer cost when it was made
    cache_saved_s: float | None = _f("generation")  # and its generation latency then
    # When and under what load the latencies above were measured (a cached answer keeps the latency of
    # the run that made its model call). None: a cache entry older than these fields, so "earlier run,
    # unknown". The sweep id is in the eval_results table so a sweep read back from MLflow still tells
    # fresh from reused timings; the rest are conditions, not results: in the row and cells.jsonl only.
    latency_sweep_id: str | None = _f("generation")  # the sweep whose model call it was
    latency_measured_at: str | None = _f("generation", table=False)  # ISO 8601 UTC, when the answer arrived
    latency_in_flight: int | None = _f("generation", table=False)  # calls in flight to the endpoint then
    latency_concurrency_limit: int | None = _f("generation", table=False)  # the endpoint's limit then
    error: str | None = _f("retrieval")  # why the cell failed; a failed cell is never scored
    # Not fields of the row itself: metric name -> value, judged metric -> why it has no value,
    # and any other key (a metric no longer registered), all kept in row order.
    scores: Mapping[str, float | None] = field(default_factory=dict, metadata={"stage": None})
    errors: Mapping[str, str | None] = field(default_factory=dict, metadata={"stage": None})
    extra: Mapping[str, Any] = field(default_factory=dict, metadata={"stage": None})

    # ------------------------------------------------------------ the flat row

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return _ROW_FIELDS

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Cell:
        """The cell of a flat row (cells.jsonl, results.rows, a row read back from MLflow)."""
        missing = [name for name in _REQUIRED if name not in row]
        if missing:
            raise ValueError(f"not a result row: it has no {', '.join(missing)} (keys: {', '.join(map(str, row))})")
        values: dict[str, Any] = {}
        scores: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in row.items():
            if key in _FIELD_SET:
                values[key] = value
            elif catalogue.is_metric(key):
                scores[key] = value
            elif key.endswith("_error") and catalogue.is_metric(key.removesuffix("_error")):
                errors[key.removesuffix("_error")] = value
            else:
                extra[key] = value
        return cls(**values, scores=scores, errors=errors, extra=extra)

    def to_row(self) -> dict[str, Any]:
        """The flat row: fields stage by stage, then each score followed by its error, then the rest."""
        row: dict[str, Any] = {}
        for name in _ROW_ORDER:
            value = getattr(self, name)
            if value is not ABSENT:
                row[name] = value
        for name, value in self.scores.items():
            row[name] = value
            if name in self.errors:
                row[catalogue.error_of(name)] = self.errors[name]
        for name, reason in self.errors.items():
            row.setdefault(catalogue.error_of(name), reason)
        row.update(self.extra)
        return row

    # ------------------------------------------------------------ reading and adding results

    @property
    def ok(self) -> bool:
        """Not failed (a failed cell is left out of every score, never counted 0)."""
        return not self.error

    def value(self, metric: str) -> float | None:
        return self.scores.get(metric)

    def replace(self, **changes: Any) -> Cell:
        return dataclasses.replace(self, **changes)

    def with_scores(self, scores: Mapping[str, float | None], errors: Mapping[str, str | None] | None = None) -> Cell:
        """A copy with these scores (and judged errors) added; existing ones are updated in place."""
        return dataclasses.replace(self, scores={**self.scores, **scores}, errors={**self.errors, **(errors or {})})


_FIELDS = [f for f in dataclasses.fields(Cell) if f.metadata.get("stage")]
_ROW_FIELDS = tuple(f.name for f in _FIELDS)
_FIELD_SET = frozenset(_ROW_FIELDS)
_REQUIRED = tuple(f.name for f in _FIELDS if f.default is dataclasses.MISSING)
_ROW_ORDER = tuple(f.name for stage in STAGES for f in _FIELDS if f.metadata["stage"] == stage)

NOT_IN_TABLE = frozenset(f.name for f in _FIELDS if not f.metadata["table"])
MEASURES = {f.name: f.metadata["measure"] for f in _FIELDS if f.metadata["measure"]}
DESCRIPTIVE = frozenset(_ROW_FIELDS) - set(MEASURES)


def table_columns() -> tuple[str, ...]:
    """The eval_results table's fixed columns: what was asked, answered and retrieved, the answer and
    retrieval scores, then the measurements and the error. A row's other keys (cut-offs, judged
    scores, metrics registered later) follow them in the table."""
    shown = [f.name for f in _FIELDS if f.metadata["table"]]
    first_measure = next(i for i, name in enumerate(shown) if name in MEASURES)
    scores = catalogue.names("answer") + catalogue.names("retrieval")
    return (*shown[:first_measure], *scores, *shown[first_measure:])


THIS_SWEEP = "this sweep"
UNKNOWN_RUN = "earlier run, unknown"


def latency_source(row: Mapping[str, Any], sweep_id: str | None) -> str:
    """Where a row's latency was measured: `THIS_SWEEP`, the id of the earlier sweep whose model call a
    cached answer reuses, or `UNKNOWN_RUN`. `sweep_id` is the sweep the row belongs to (None: not known,
    then a row that made its own model call counts as measured here).

    A row without `latency_sweep_id` (written before it existed, or read back from MLflow's table) was
    measured here unless its answer came from the cache.

    >>> latency_source({"cached": True, "latency_sweep_id": "s1"}, "s2"), latency_source({"cached": False}, "s2")
    ('s1', 'this sweep')
    """
    cached = row.get("cached")
    cached = bool(cached) and cached == cached  # NaN (a table's empty cell) is not True
    if "latency_sweep_id" not in row:
        return UNKNOWN_RUN if cached else THIS_SWEEP
    measured_in = row["latency_sweep_id"]
    if not isinstance(measured_in, str) or not measured_in:  # None, or NaN read back from a table
        return UNKNOWN_RUN
    if measured_in == sweep_id or (sweep_id is None and not cached):
        return THIS_SWEEP
    return measured_in


def measure_stem(name: str) -> str:
    """The prefix of a measure's aggregates: latency_total_s -> latency_total (latency_total_p95_s)."""
    return name.removesuffix("_s")


__all__ = ["ABSENT", "Cell", "DESCRIPTIVE", "MEASURES", "NOT_IN_TABLE", "STAGES", "THIS_SWEEP", "UNKNOWN_RUN",
           "latency_source", "measure_stem", "table_columns"]
