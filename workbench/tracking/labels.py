"""Human labels as MLflow assessments on a question's trace, and reading them back.

A label is a `Feedback` named `human_verdict` (value correct / partly / wrong, the note as its rationale,
source HUMAN with the labeller's name) logged with `mlflow.log_feedback`; a corrected answer is an
`Expectation` named `corrected_answer` (`mlflow.log_expectation`). MLflow's trace view shows both next
to the sweep's own scores. Labelling again adds a newer assessment; the newest one counts.

The labeller comes from the environment: `WORKBENCH_LABELLER`, else the login name.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from workbench.errors import ConfigError, TrackingError
from workbench.tracking.store import require_existing_store

VERDICT, CORRECTED = "human_verdict", "corrected_answer"
VERDICTS = ("correct", "partly", "wrong")
QUESTION_TAG = "workbench.question_id"


def labeller() -> str:
    name = os.environ.get("WORKBENCH_LABELLER", "").strip()
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container
        return "unknown"


def check_verdict(verdict: Any) -> str:
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict: {verdict!r} is not a label; use one of {', '.join(VERDICTS)}")
    return verdict


def _quoted(value: str, what: str) -> str:
    if "'" in value or "`" in value:  # MLflow's filter strings have no escaping
        raise TrackingError(f"{what} {value!r} has a quote in it; it cannot be looked up in MLflow's trace search")
    return f"'{value}'"


def _sweep_traces(client: Any, sweep_id: str, variant_hash: str | None = None, include_spans: bool = False,
                  question_id: str | None = None) -> list:
    filters = [f"tags.`workbench.sweep_id` = {_quoted(sweep_id, 'sweep id')}"]
    if variant_hash:
        filters.append(f"tags.`workbench.variant_hash` = {_quoted(variant_hash, 'variant')}")
    if question_id is not None:
        filters.append(f"tags.`{QUESTION_TAG}` = {_quoted(question_id, 'question id')}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    out, token = [], None
    while True:
        page = client.search_traces(locations=experiments, filter_string=" AND ".join(filters), max_results=500,
                                    page_token=token, include_spans=include_spans)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _question_id(trace: Any) -> str | None:
    """The question a trace answers: its tag, else (older sweeps) the root span's attribute."""
    qid = trace.info.tags.get(QUESTION_TAG)
    if qid is None and trace.data is not None:
        for span in trace.data.spans:
            if span.parent_id is None:
                qid = span.attributes.get("question_id")
    return None if qid is None else str(qid)


def find_trace(tracking_uri: str, sweep_id: str, variant_hash: str, question_id: str) -> str:
    import mlflow

    require_existing_store(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    if "'" not in question_id and "`" not in question_id:  # by its tag: one indexed look-up
        tagged = _sweep_traces(client, sweep_id, variant_hash, question_id=question_id)
        if tagged:
            return tagged[0].info.trace_id
    for trace in _sweep_traces(client, sweep_id, variant_hash, include_spans=True):  # sweeps before the tag
        if _question_id(trace) == question_id:
            return trace.info.trace_id
    raise TrackingError(
        f"question {question_id!r} of variant {variant_hash[:12]} has no trace in sweep {sweep_id} at {tracking_uri} "
        "(tracking.max_traces_per_variant may have capped the traces); run the sweep with every question traced"
    )


def log_label(tracking_uri: str, trace_id: str, verdict: str, corrected: str | None = None, note: str | None = None,
              who: str | None = None) -> dict[str, Any]:
    """Log one human label on a trace; returns it as `read_labels` would."""
    import mlflow
    from mlflow.entities import AssessmentSource

    check_verdict(verdict)
    if corrected is not None and not corrected.strip():
        raise ConfigError("corrected: the corrected answer is empty; write the answer or leave it out (None)")
    who = who or labeller()
    source = AssessmentSource(source_type="HUMAN", source_id=who)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.log_feedback(trace_id=trace_id, name=VERDICT, value=verdict, source=source, rationale=note or None)
    if corrected is not None:
        mlflow.log_expectation(trace_id=trace_id, name=CORRECTED, value=corrected.strip(), source=source)
    return {"trace_id": trace_id, "verdict": verdict, "corrected": corrected.strip() if corrected else None,
            "note": note or None, "labeller": who}


def read_labels(tracking_uri: str, sweep_id: str) -> list[dict[str, Any]]:
    """The newest human label per labelled (variant, question) of a sweep: variant_hash, question_id,
    verdict, corrected (the newest corrected answer, if any), note, labeller, trace_id, time_ms."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    out = []
    for trace in _sweep_traces(client, sweep_id):
        human = [a for a in (trace.info.assessments or []) if a.source and a.source.source_type == "HUMAN"
                 and a.name in (VERDICT, CORRECTED) and a.valid is not False]
        verdicts = sorted((a for a in human if a.name == VERDICT), key=lambda a: a.create_time_ms or 0)
        if not verdicts:
            continue
        last = verdicts[-1]
        corrected = sorted((a for a in human if a.name == CORRECTED), key=lambda a: a.create_time_ms or 0)
        qid = _question_id(trace)
        if qid is None:  # an older sweep's trace: its question id is on the root span
            qid = _question_id(client.get_trace(trace.info.trace_id))
        out.append({"variant_hash": trace.info.tags.get("workbench.variant_hash"), "question_id": qid,
                    "verdict": last.value, "corrected": corrected[-1].value if corrected else None,
                    "note": last.rationale, "labeller": last.source.source_id, "trace_id": trace.info.trace_id,
                    "time_ms": last.create_time_ms})
    return out


def log_agreement(tracking_uri: str, run_id: str, rows: list[dict[str, Any]]) -> None:
    """Judge agreement on the sweep's parent run: `judge_agreement.<metric>.{kappa,accuracy,threshold,n}`
    metrics and the whole table as `judge_agreement.json`."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    for row in rows:
        for key in ("kappa", "accuracy", "threshold", "n"):
            value = row.get(key)
            if value is not None and value == value:  # NaN: not measured
                client.log_metric(run_id, f"judge_agreement.{row['metric']}.{key}", float(value))
    clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]
    client.log_dict(run_id, {"rows": clean}, "judge_agreement.json")
