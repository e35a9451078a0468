"""Finished traces written to MLflow's SQL store as rows: one multi-row insert per table per batch.

MLflow's `start_trace` + `log_spans` build an ORM object per row (trace, tag, metadata, assessment, span),
flush them one trace at a time and then revisit each trace to merge what the spans say (~8 ms of CPU a
question trace on sqlite). For the traces the workbench makes — new ids, finished, previews and token
usage already in their info, no cost, session or user attributes — the rows those two calls leave are
known in advance: this module computes them with MLflow's own helpers and inserts them with SQLAlchemy
Core into the tables of MLflow's own ORM models (`mlflow.store.tracking.dbmodels.models`), in the
caller's transaction. `tests/test_trace_rows.py` writes the same traces both ways into two stores and
compares everything MLflow reads back, so a change in MLflow's layout shows there.

Anything else goes MLflow's way: a trace outside that shape (`plain`), a store that is not MLflow's SQL
store, tables whose columns are not the ones this was written for, or rollups switched on (`usable`,
checked once per store, with one log line saying why).
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)

# Every column this module writes, per MLflow table; `usable` checks the installed MLflow's tables have
# them and require nothing else.
WRITES = {
    "trace_info": {"request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status",
                   "client_request_id", "request_preview", "response_preview", "trace_name",
                   "db_payload_generation"},
    "trace_tags": {"request_id", "key", "value"},
    "trace_request_metadata": {"request_id", "key", "value"},
    "assessments": {"assessment_id", "trace_id", "name", "assessment_type", "value", "error",
                    "created_timestamp", "last_updated_timestamp", "source_type", "source_id", "run_id",
                    "span_id", "rationale", "overrides", "valid", "assessment_metadata", "experiment_id",
                    "trace_timestamp_ms", "aggregate_value", "is_numeric_value"},
    "spans": {"trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
              "start_time_unix_nano", "end_time_unix_nano", "content", "input_cost", "output_cost",
              "total_cost", "model_name", "model_provider"},
}
_checked: dict[tuple, bool] = {}  # (store class, database URI) -> usable


def _tables() -> dict[str, Any]:
    from mlflow.store.tracking.dbmodels import models as m

    return {t.name: t for t in (m.SqlTraceInfo.__table__, m.SqlTraceTag.__table__, m.SqlTraceMetadata.__table__,
                                m.SqlAssessments.__table__, m.SqlSpan.__table__)}


# MLflow's own helpers the rows are computed with (module -> names); an MLflow without them takes its own path.
HELPERS = {
    "mlflow.store.tracking.sqlalchemy_store": (
        "SqlAlchemyStore", "MSSQL", "TraceJSONEncoder", "bounded_model_dimension", "_try_parse_json_string",
        "finite_float_or_none", "token_count_or_none", "TOKEN_COLUMN_BY_KEY", "COST_COLUMN_BY_KEY",
        "aggregate_usage_from_span_nodes", "aggregate_cost_from_span_nodes", "_span_aggregation_node",
        "validate_trace_name"),
    "mlflow.store.tracking.dbmodels.models": ("assessment_aggregate", "generate_assessment_id"),
    "mlflow.store.tracking.utils.trace_analytics": ("PROMOTED_TRACE_METADATA_KEYS", "analytics_columns_from_metadata"),
    "mlflow.store.tracking.utils.sql_trace_rollups": ("rollups_enabled",),
    "mlflow.tracing.otel.translation": ("translate_span_when_storing",),
}


def _layout_problem(store: Any) -> str | None:
    """Why the bulk path would not leave what MLflow's path leaves, or None."""
    import importlib

    for module, names in HELPERS.items():
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            return f"MLflow has no module {module}"
        if missing := [n for n in names if not hasattr(loaded, n)]:
            return f"MLflow's {module} has no {', '.join(missing)}"
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.store.tracking.utils.sql_trace_rollups import rollups_enabled

    if missing := [m for m in ("_get_trace_artifact_location_tag", "_check_experiment_is_active", "get_experiment")
                   if not hasattr(SqlAlchemyStore, m)]:
        return f"MLflow's SQL store has no {', '.join(missing)}"
    if not isinstance(store, SqlAlchemyStore) or "ManagedSessionMaker" not in store.__dict__:
        return f"the store is {type(store).__name__}, not MLflow's SQL store"
    if rollups_enabled():
        return "MLflow's SQL trace rollups are on (their queue is written by MLflow's path only)"
    tables = _tables()
    if set(tables) != set(WRITES):
        return f"MLflow's trace tables are {sorted(tables)}, expected {sorted(WRITES)}"
    from mlflow.store.tracking.utils.trace_analytics import COST_COLUMN_BY_KEY, TOKEN_COLUMN_BY_KEY

    for name, table in tables.items():
        written = WRITES[name] | ({"session_id", *TOKEN_COLUMN_BY_KEY.values(), *COST_COLUMN_BY_KEY.values()}
                                 if name == "trace_info" else set())
        if missing := written - set(table.c.keys()):
            return f"MLflow's table {name} has no column(s) {sorted(missing)}"
        required = {c.key for c in table.c if not c.nullable and c.default is None
                    and c.server_default is None and c.computed is None and c.autoincrement is not True}
        if unknown := required - written:
            return f"MLflow's table {name} requires column(s) {sorted(unknown)} this writer does not fill"
    return None


def usable(store: Any) -> bool:
    """Whether traces can go to `store` as rows (checked once per store; the reason logged when not)."""
    key = (type(store), getattr(store, "db_uri", None) or id(store))
    if key not in _checked:
        problem = _layout_problem(store)
        if problem:
            import mlflow

            logger.warning("traces are stored through MLflow's start_trace/log_spans (slower): %s "
                           "(this writer was written for MLflow 3.17, installed %s)", problem, mlflow.__version__)
        _checked[key] = problem is None
    return _checked[key]


def plain(trace: Any) -> bool:
    """A trace whose stored rows this module knows: finished, previews set, and no span attribute that
    `log_spans` turns into a session, user, trace tags or metadata (token usage and cost it sums: `_span_totals`)."""
    from mlflow.entities.trace_state import TraceState
    from mlflow.tracing.constant import GenAiSemconvKey, SpanAttributeKey

    info = trace.info
    if info.state not in (TraceState.OK, TraceState.ERROR) or info.request_preview is None \
            or info.response_preview is None or not trace.data.spans:
        return False
    for span in trace.data.spans:
        attrs = span._span.attributes or {}
        if SpanAttributeKey.SESSION_ID in attrs or "user.id" in attrs or GenAiSemconvKey.CONVERSATION_ID in attrs:
            return False
        if span.parent_id is None and any(k.startswith(SpanAttributeKey.TRACE_TAG_PREFIX) for k in attrs):
            return False
        resource = getattr(span._span, "resource", None)
        if resource is not None and any(not k.startswith(("telemetry.sdk.", "mlflow.")) for k in resource.attributes):
            return False
    return True


def _assessment_row(a: Any, trace_id: str, experiment_id: int, trace_ms: int, now: int) -> dict[str, Any]:
    """The row `SqlAssessments.from_mlflow_entity` makes, plus what `start_trace` fills in."""
    from mlflow.store.tracking.dbmodels import models as m

    if a.assessment_id is None:
        a.assessment_id = m.generate_assessment_id()
    if a.feedback is not None:
        kind, value = "feedback", a.feedback.value
        error = json.dumps(a.feedback.error.to_dictionary()) if a.feedback.error else None
    elif a.expectation is not None:
        kind, value, error = "expectation", a.expectation.value, None
    else:  # an issue reference: never made here
        raise ValueError(f"assessment {a.name!r} is neither feedback nor expectation")
    aggregate, numeric = m.assessment_aggregate(value)
    return {"assessment_id": a.assessment_id, "trace_id": trace_id, "name": a.name, "assessment_type": kind,
            "value": json.dumps(value), "error": error, "created_timestamp": a.create_time_ms or now,
            "last_updated_timestamp": a.last_update_time_ms or now, "source_type": a.source.source_type,
            "source_id": a.source.source_id, "run_id": a.run_id, "span_id": a.span_id, "rationale": a.rationale,
            "overrides": a.overrides, "valid": True,
            "assessment_metadata": json.dumps(a.metadata) if a.metadata else None,
            "experiment_id": experiment_id, "trace_timestamp_ms": trace_ms, "aggregate_value": aggregate,
            "is_numeric_value": numeric}


def _span_row(span: Any, experiment_id: str, ascii_only: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row `log_spans` writes for a span, and the span's (translated) attributes."""
    from mlflow.store.tracking import sqlalchemy_store as s
    from mlflow.tracing.constant import SpanAttributeKey
    from mlflow.tracing.otel.translation import translate_span_when_storing

    span_dict = translate_span_when_storing(span)
    attrs = span_dict.get("attributes", {})
    cost = {}
    if raw_cost := attrs.get(SpanAttributeKey.LLM_COST):
        try:
            cost = json.loads(raw_cost)
        except (TypeError, ValueError):
            pass  # MLflow skips a malformed cost too
    return {"trace_id": span.trace_id, "experiment_id": experiment_id, "span_id": span.span_id,
            "parent_span_id": span.parent_id, "name": span.name, "type": span.span_type,
            "status": span.status.status_code, "start_time_unix_nano": span.start_time_ns,
            "end_time_unix_nano": span.end_time_ns,
            "content": json.dumps(span_dict, cls=s.TraceJSONEncoder, ensure_ascii=ascii_only),
            **{k: s.finite_float_or_none(cost.get(k)) for k in ("input_cost", "output_cost", "total_cost")},
            "model_name": s.bounded_model_dimension(s._try_parse_json_string(attrs.get(SpanAttributeKey.MODEL))),
            "model_provider": s.bounded_model_dimension(
                s._try_parse_json_string(attrs.get(SpanAttributeKey.MODEL_PROVIDER)))}, attrs


def _span_totals(spans: list, attrs: list[dict[str, Any]]) -> dict[str, Any]:
    """The trace's token and cost columns as `log_spans` fills them when `start_trace` left them empty:
    MLflow's tree-aware sums over the spans' usage and cost."""
    from mlflow.store.tracking import sqlalchemy_store as s
    from mlflow.tracing.constant import SpanAttributeKey

    def nodes(key: str) -> list:
        return [s._span_aggregation_node(x.span_id, x.parent_id, a, key) for x, a in zip(spans, attrs)]

    out: dict[str, Any] = {}
    usage = s.aggregate_usage_from_span_nodes(nodes(SpanAttributeKey.CHAT_USAGE))
    for key, column in s.TOKEN_COLUMN_BY_KEY.items():
        if usage and (value := s.token_count_or_none(usage.get(key))) is not None:
            out[column] = value
    cost = s.aggregate_cost_from_span_nodes(nodes(SpanAttributeKey.LLM_COST))
    for key, column in s.COST_COLUMN_BY_KEY.items():
        if cost and (value := s.finite_float_or_none(cost.get(key))) is not None:
            out[column] = value
    return out


def rows(store: Any, traces: list, experiments: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every row `start_trace` then `log_spans` would leave for these new, `plain` traces, per table."""
    from mlflow.store.tracking import sqlalchemy_store as s
    from mlflow.store.tracking.utils.trace_analytics import (
        PROMOTED_TRACE_METADATA_KEYS, analytics_columns_from_metadata,
    )
    from mlflow.tracing.constant import SpansLocation, TraceMetadataKey, TraceTagKey
    from mlflow.utils.time import get_current_time_millis

    out: dict[str, list[dict[str, Any]]] = {name: [] for name in WRITES}
    ascii_only = store.db_type == s.MSSQL
    now = get_current_time_millis()
    for trace in traces:
        info, tid = trace.info, trace.info.trace_id
        experiment = experiments[info.experiment_id]
        metadata = dict(info.trace_metadata)
        row = {"request_id": tid, "experiment_id": info.experiment_id, "timestamp_ms": info.request_time,
               "execution_time_ms": info.execution_duration, "status": info.state.value,
               "client_request_id": info.client_request_id, "request_preview": info.request_preview,
               "response_preview": info.response_preview,
               "trace_name": s.validate_trace_name(info.tags.get(TraceTagKey.TRACE_NAME)),
               "db_payload_generation": 1,  # log_spans' bump from the column's 0
               "session_id": None}
        row.update(analytics_columns_from_metadata(metadata))
        made = [_span_row(span, info.experiment_id, ascii_only) for span in trace.data.spans]
        out["spans"].extend(r for r, _ in made)
        totals = _span_totals(trace.data.spans, [a for _, a in made])
        for columns in (s.TOKEN_COLUMN_BY_KEY.values(), s.COST_COLUMN_BY_KEY.values()):
            if all(row.get(c) is None for c in columns):  # start_trace's values, if any, take precedence
                row.update({c: totals[c] for c in columns if c in totals})
        out["trace_info"].append(row)
        tags = {k: v for k, v in info.tags.items() if k != TraceTagKey.TRACE_NAME}
        artifact = store._get_trace_artifact_location_tag(experiment, tid)
        tags[artifact.key] = artifact.value
        tags[TraceTagKey.SPANS_LOCATION] = SpansLocation.TRACKING_STORE.value
        out["trace_tags"].extend({"request_id": tid, "key": k, "value": v} for k, v in tags.items())
        for key in PROMOTED_TRACE_METADATA_KEYS:
            metadata.pop(key, None)
        metadata[TraceMetadataKey.TRACE_INFO_FINALIZED] = "true"
        out["trace_request_metadata"].extend(
            {"request_id": tid, "key": k, "value": v} for k, v in sorted(metadata.items()))
        out["assessments"].extend(_assessment_row(a, tid, int(info.experiment_id), info.request_time, now)
                                  for a in info.assessments)
    return out


def insert(store: Any, session: Any, traces: list, experiments: dict[str, Any]) -> None:
    """Insert the traces' rows in `session`'s transaction, one executemany per table, parents first."""
    from sqlalchemy import insert as sql_insert

    tables = _tables()
    by_table = rows(store, traces, experiments)
    # the token/cost columns differ between traces: every row gets every key, so one statement fits all
    info_keys = set().union(*(r.keys() for r in by_table["trace_info"])) if by_table["trace_info"] else set()
    for r in by_table["trace_info"]:
        for k in info_keys - r.keys():
            r[k] = None
    for name in ("trace_info", "trace_tags", "trace_request_metadata", "assessments", "spans"):
        if by_table[name]:
            session.execute(sql_insert(tables[name]), by_table[name])
