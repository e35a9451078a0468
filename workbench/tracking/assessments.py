"""A question's scores and expectations as MLflow assessments, the way `mlflow.genai.evaluate` logs them.

One `Feedback` per metric the cell has (source CODE "workbench", value the score, the variant's run in
`mlflow.assessment.sourceRunId`, on the root span), an error instead of a value where the cell failed or
the judge could not score it; the reference answers (`expected_response`) and relevant document ids
(`relevant_ids`) as `Expectation`s (source HUMAN: they come from the eval set). MLflow's Evaluation runs
view shows them as columns, filters on them and compares two runs side by side.

They are attached to the trace before it is stored: MLflow's `start_trace` stores a trace and its
assessments in one transaction, where `log_assessment` would cost one per score (see
experiments/benchmarks/trace_assessments.py for the measured difference).
"""

from __future__ import annotations

from typing import Any, Iterable

from workbench.scoring import catalogue
from workbench.scoring.catalogue import error_of
from workbench.tracking.naming import round_sig

SOURCE_ID = "workbench"
EVAL_SET = "eval-set"
CELL_FAILED, NOT_SCORED = "CELL_FAILED", "NOT_SCORED"


def score_names(row: dict[str, Any]) -> list[str]:
    """The row's metric keys, in the row's order: catalogue metrics, cut-off columns, and any other number
    that is no Cell field (a metric registered in the user's process, which this process does not know)."""
    from workbench.scoring.cell import Cell

    fields = Cell.__dataclass_fields__
    return [k for k, v in row.items() if catalogue.is_metric(k) or (
        k not in fields and isinstance(v, (int, float)) and not isinstance(v, bool))]


def feedbacks(row: dict[str, Any], run_id: str, names: Iterable[str] | None = None) -> list:
    """One Feedback per metric of the row (or of `names`): its score, or why there is none.

    A failed cell gets an error Feedback for every answer metric it could not be scored on, so the
    failure shows in the same columns as the scores. A metric not defined for the question (None:
    no relevant document) gets no assessment, as it is left out of the means.
    """
    from mlflow.entities import AssessmentError, AssessmentSource, Feedback
    from mlflow.tracing.constant import AssessmentMetadataKey

    source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
    meta = {AssessmentMetadataKey.SOURCE_RUN_ID: run_id}
    whole = names is None  # the whole cell (log_cell), or only these (judged later)
    out = []
    for name in score_names(row) if whole else names:
        value = row.get(name)
        if value is not None:
            out.append(Feedback(name=name, value=round_sig(float(value)), source=source, metadata=meta))
        elif row.get(error_of(name)):  # a judgement that did not parse
            out.append(Feedback(name=name, source=source, metadata=meta, error=AssessmentError(
                error_code=NOT_SCORED, error_message=str(row[error_of(name)]))))
    if whole and row.get("error"):
        for name in catalogue.names("answer"):
            if name not in row:
                out.append(Feedback(name=name, source=source, metadata=meta, rationale=str(row["error"]),
                                    error=AssessmentError(error_code=CELL_FAILED, error_message=str(row["error"]))))
    return out


def expectations(row: dict[str, Any]) -> list:
    """What the eval set expects: the first reference answer (all of them when there are several distinct
    ones) and the relevant document ids."""
    from mlflow.entities import AssessmentSource, Expectation

    source = AssessmentSource(source_type="HUMAN", source_id=EVAL_SET)
    out = []
    refs = list(dict.fromkeys(row.get("reference_answers") or []))
    if refs:
        out.append(Expectation(name="expected_response", value=refs[0], source=source))
        if len(refs) > 1:
            out.append(Expectation(name="reference_answers", value=refs, source=source))
    if row.get("relevant_ids"):
        out.append(Expectation(name="relevant_ids", value=list(row["relevant_ids"]), source=source))
    return out


def attach(trace_id: str, span_id: str, assessments: list) -> None:
    """Add assessments to a trace that is still open, so its export stores them with it.

    Uses MLflow's in-memory trace manager, the place its exporter reads the trace from; a test checks
    the stored trace holds them (tests/test_mlflow_views.py), so an MLflow change cannot lose them quietly.
    """
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    for a in assessments:
        a.trace_id, a.span_id = trace_id, span_id
    with InMemoryTraceManager.get_instance().get_trace(trace_id) as trace:
        if trace is None:
            raise RuntimeError(f"trace {trace_id} is no longer open: its assessments cannot be attached")
        trace.info.assessments.extend(assessments)
