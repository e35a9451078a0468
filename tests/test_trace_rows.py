"""Traces written as rows (`workbench.tracking.trace_rows`) are what MLflow's own `start_trace` + `log_spans` store.

The same traces (same ids) go into two fresh sqlite stores, one through MLflow's path and one as rows; every
row of MLflow's trace tables and everything MLflow reads back (get_trace, search_traces with filters on
assessments, tags and metadata) must be equal. This is the test that fails when an MLflow upgrade changes
what a stored trace is; the bulk path then has to follow (or `trace_rows.WRITES` stops matching and the
writer falls back by itself, as the last tests check).
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import SpanType
from mlflow.tracing.client import TracingClient

from test_trace_batch import row
from workbench.spec import TrackingConfig, load_spec
from workbench.tracking import mlflow_tracker, trace_rows
from workbench.tracking.trace_batch import TraceBatch, store_traces

TABLES = ("trace_info", "trace_tags", "trace_request_metadata", "assessments", "spans")


def open_session(tmp: Path, spec):
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db", artifact_location=str(tmp / "art"))
    tracker = mlflow_tracker.MlflowTracker(cfg, "rows")
    tracker.start_sweep(spec, "rows", 1, {}).result()
    tracker.start_variant(spec.variants()[0], pd.DataFrame({"question": ["q"]})).result()
    return tracker


def made_traces(tracker, variant) -> list:
    """Question traces of every shape the workbench makes, plus one `plain` refuses (it goes MLflow's way)."""
    now = time.time_ns()
    cells = [row(variant, "scored", started_at_ns=now),
             row(variant, "unicode", started_at_ns=now + 1, question="Qui a gagné — 北京?", answer="Müller ✓"),
             row(variant, "failed", started_at_ns=now + 2, answer=None, error="TimeoutError: model took 30 s",
                 f1=None, exact_match=None, tokens_prompt=None, tokens_completion=None),
             row(variant, "judged", started_at_ns=now + 3, faithfulness=None,
                 faithfulness__error="judge reply was not JSON", reference_answers=["A", "B", "A"]),
             {k: v for k, v in row(variant, "retrieval-only", started_at_ns=now + 4).items()
              if k not in ("messages", "answer", "tokens_prompt", "tokens_completion")}]
    for cell in cells:
        tracker.log_cell(variant, cell).result()
    batch = tracker._batch
    # a served request's shape (serve_log): tags, a cost attribute of our own, a failed retrieval
    root = batch.start_span("serve", SpanType.CHAIN, inputs={"question": "q"}, tags={"workbench.answer_id": "a1"},
                            attributes={"workbench.route": "answer"}, experiment_id=tracker.experiment.experiment_id,
                            start_time_ns=now)
    ret = batch.start_span("retrieve", SpanType.RETRIEVER, parent=root, inputs={"query": "q"}, start_time_ns=now)
    ret.end(outputs=[], status="ERROR", end_time_ns=now + 5)
    gen = batch.start_span("generate", SpanType.CHAT_MODEL, parent=root, start_time_ns=now + 5,
                           attributes={"usage.prompt_tokens": 7, "usage.completion_tokens": 2, "cost_usd": 0.001})
    gen.end(outputs={"answer": "x"}, end_time_ns=now + 9)
    root.end(outputs={"answer": "x"}, end_time_ns=now + 10)
    # a user id on the root: log_spans turns it into metadata, so this trace is not `plain`
    odd = batch.start_span("odd", SpanType.CHAIN, inputs={"q": 1}, attributes={"user.id": "u-7"},
                           experiment_id=tracker.experiment.experiment_id, start_time_ns=now)
    odd.end(outputs={"a": 2}, end_time_ns=now + 3)
    traces = list(batch.done)
    batch.done.clear()
    for trace in traces:  # ids given before copying, so both stores get the same ones
        for a in trace.info.assessments:
            a.assessment_id = a.assessment_id or f"a-{trace.info.trace_id[-8:]}-{a.name}"
    return traces


def table_rows(db: Path, tmp: Path) -> dict[str, dict]:
    """Every row of MLflow's trace tables, by its primary key (the store's folder written as TMP)."""
    from workbench.tracking.trace_rows import _tables

    con = sqlite3.connect(db)
    try:
        out = {}
        for name, table in _tables().items():
            cur = con.execute(f"select * from {name}")  # noqa: S608 (MLflow's table names)
            cols = [d[0] for d in cur.description]
            key = [c.name for c in table.primary_key.columns]
            out[name] = {}
            for r in cur.fetchall():
                d = {c: (v.replace(str(tmp), "TMP") if isinstance(v, str) else v) for c, v in zip(cols, r)}
                out[name][tuple(d[k] for k in key)] = d
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from _two_stores(tmp_path_factory.mktemp("two"), monkeypatch)


def _two_stores(tmp_path: Path, monkeypatch):
    spec = load_spec({"name": "rows", "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                               "eval": {"format": "jsonl", "path": "e.jsonl"}}})
    variant = spec.variants()[0]
    monkeypatch.setattr(TraceBatch, "due", lambda self: False)  # held until stored here
    mlflow_way, as_rows = tmp_path / "mlflow", tmp_path / "rows"
    a = open_session(mlflow_way, spec)
    traces = made_traces(a, variant)
    assert [trace_rows.plain(t) for t in traces] == [True] * 6 + [False]
    ours = copy.deepcopy(traces)
    with monkeypatch.context() as m:
        m.setattr(trace_rows, "usable", lambda store: False)
        store_traces(TracingClient(a.cfg.tracking_uri).store, traces)
    a.finish_sweep("FINISHED").result()
    b = open_session(as_rows, spec)  # one sweep active at a time; the same experiment id in a new store
    assert b.experiment.experiment_id == a.experiment.experiment_id
    inserted = []
    real_insert = trace_rows.insert
    monkeypatch.setattr(trace_rows, "insert", lambda *args: (inserted.append(len(args[2])), real_insert(*args)))
    store_traces(TracingClient(b.cfg.tracking_uri).store, ours)
    assert inserted == [6]  # the plain ones as rows, the odd one by MLflow's path, in the same transaction
    b.finish_sweep("FINISHED").result()  # the stores stay readable; no sweep left active for later tests
    yield (a, mlflow_way), (b, as_rows), [t.info.trace_id for t in traces]


def test_every_row_of_mlflows_trace_tables_is_the_same_both_ways(two_stores):
    (_, tmp_a), (_, tmp_b), ids = two_stores
    mine, theirs = table_rows(tmp_b / "mlruns/mlflow.db", tmp_b), table_rows(tmp_a / "mlruns/mlflow.db", tmp_a)
    assert len(theirs["trace_info"]) == len(ids) and len(theirs["spans"]) == 3 * 4 + 2 + 3 + 1
    for name in TABLES:
        assert mine[name].keys() == theirs[name].keys(), name
        for key, row in theirs[name].items():
            assert mine[name][key] == row, (name, key, {c: (v, mine[name][key][c]) for c, v in row.items()
                                                          if mine[name][key][c] != v})


def test_what_mlflow_reads_back_is_the_same_both_ways(two_stores):
    (a, tmp_a), (b, tmp_b), ids = two_stores
    ca, cb = TracingClient(a.cfg.tracking_uri), TracingClient(b.cfg.tracking_uri)

    def same(x, y, tmp_x, tmp_y):  # field by field, whatever order the rows were read in
        assert json.dumps(x, sort_keys=True).replace(str(tmp_x), "TMP") == \
            json.dumps(y, sort_keys=True).replace(str(tmp_y), "TMP")

    for trace_id in ids:
        ta, tb = ca.get_trace(trace_id), cb.get_trace(trace_id)
        same(ta.to_dict(), tb.to_dict(), tmp_a, tmp_b)
        assert tb.info.token_usage == ta.info.token_usage and tb.info.request_preview == ta.info.request_preview
    exp = a.experiment.experiment_id
    for flt in (None, "feedback.f1 > 0.4", "tags.`workbench.question_id` = 'failed'", "trace.status = 'ERROR'",
                "metadata.`mlflow.sourceRun` = '%s'" % a.run_ids[next(iter(a.run_ids))]):
        ra = ca.search_traces(locations=[exp], filter_string=flt, max_results=100)
        rb = cb.search_traces(locations=[exp], filter_string=flt, max_results=100)
        assert ra, flt
        same(sorted((t.to_dict() for t in ra), key=str), sorted((t.to_dict() for t in rb), key=str), tmp_a, tmp_b)
    failed = cb.get_trace(ids[2])
    errors = [x for x in failed.info.assessments if x.feedback and x.feedback.error]
    assert errors and errors[0].feedback.error.error_code == "CELL_FAILED" and errors[0].rationale


def test_a_store_it_was_not_written_for_takes_mlflows_path_and_says_so_once(tmp_path, monkeypatch, caplog):
    spec = load_spec({"name": "rows", "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                               "eval": {"format": "jsonl", "path": "e.jsonl"}}})
    variant = spec.variants()[0]
    monkeypatch.setattr(TraceBatch, "due", lambda self: False)
    tracker = open_session(tmp_path, spec)
    traces = made_traces(tracker, variant)
    store = TracingClient(tracker.cfg.tracking_uri).store
    # an MLflow whose trace_info has a required column this writer does not know
    known = {**trace_rows.WRITES, "trace_info": trace_rows.WRITES["trace_info"] - {"status"}}
    monkeypatch.setattr(trace_rows, "WRITES", known)
    monkeypatch.setattr(trace_rows, "_checked", {})
    monkeypatch.setattr(trace_rows, "insert", lambda *a: pytest.fail("rows written into a store of another layout"))
    with caplog.at_level(logging.WARNING, logger=trace_rows.__name__):
        store_traces(store, traces[:3])
        store_traces(store, traces[3:])
    said = [r.getMessage() for r in caplog.records if r.name == trace_rows.__name__]
    assert len(said) == 1 and "trace_info" in said[0] and "status" in said[0]
    stored = TracingClient(tracker.cfg.tracking_uri).search_traces(locations=[tracker.experiment.experiment_id],
                                                                   max_results=100)
    assert len(stored) == len(traces)
    tracker.finish_sweep("FINISHED").result()
    # a tracking server is no SQL store: never rows
    assert not trace_rows.usable(TracingClient("http://127.0.0.1:9").store)
    # an MLflow without one of the helpers the rows are computed with (an older or newer one)
    monkeypatch.setattr(trace_rows, "HELPERS", {**trace_rows.HELPERS, "mlflow.tracing.utils": ("no_such_helper",)})
    monkeypatch.setattr(trace_rows, "_checked", {})
    assert "no_such_helper" in trace_rows._layout_problem(store) and not trace_rows.usable(store)
