"""Traces stored in batches (`workbench.tracking.trace_batch`) are the traces MLflow's own exporter stores, on a
real sqlite store: same tags, metadata, previews, token usage, assessments and spans; every cell's trace is
stored by the end of its variant; a span the user has open neither adopts them nor is taken over."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from workbench.spec import TrackingConfig, load_spec
from workbench.tracking.mlflow_tracker import MlflowTracker
from workbench.tracking import trace_batch
from workbench.tracking.trace_batch import BATCH, is_database_uri

SCORES = {"hit_at_k": 1.0, "recall_at_k": 0.5, "mrr": 0.5, "f1": 0.4666666666666666, "exact_match": 0.0}


def row(variant, qid: str, **extra) -> dict:
    return {"variant_hash": variant.hash, "variant": variant.short_hash, "question_id": qid,
            "question": "Which team won Super Bowl 50?", "messages": [{"role": "user", "content": "Q?"}],
            "retrieved_chunk_ids": ["d1-0", "d2-0"], "retrieved_chunk_doc_ids": ["d1", "d2"],
            "retrieved_doc_ids": ["d1", "d2"], "contexts": ["Denver won.", "Carolina lost."],
            "started_at_ns": 1_700_000_000_000_000_000, "latency_retrieve_s": 0.01, "latency_generate_s": 0.2,
            "answer": "Denver Broncos", "error": None, "tokens_prompt": 300, "tokens_completion": 5,
            "reference_answers": ["Denver Broncos"], "relevant_ids": ["d1"], **SCORES, **extra}


@pytest.fixture
def session(tmp_path: Path):
    spec = load_spec({"name": "batch", "data": {"corpus": {"format": "jsonl", "path": "c.jsonl"},
                                                "eval": {"format": "jsonl", "path": "e.jsonl"}}})
    variant = spec.variants()[0]
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db", artifact_location=str(tmp_path / "art"))
    tracker = MlflowTracker(cfg, "batch")
    tracker.start_sweep(spec, "batch", 1, {}).result()
    tracker.start_variant(variant, pd.DataFrame({"question": ["q"]})).result()
    yield tracker, variant
    if tracker.parent_run_id:
        tracker.finish_sweep("FINISHED").result()


def stored(tracker, variant, qid: str):
    return tracker.client.get_trace(tracker.trace_ids[(variant.hash, qid)])


def comparable(trace) -> dict:
    """The stored trace without what differs between any two traces: ids, creation times, sizes of ids."""
    info = trace.info.to_dict()
    trace_id = info.pop("trace_id")
    info.pop("request_time")
    info["tags"].pop("mlflow.artifactLocation")
    for key in ("mlflow.trace.sizeBytes", "mlflow.trace.sizeStats"):
        assert info["trace_metadata"].pop(key)
    root_id = trace.data.spans[0].span_id
    assert all(a["trace_id"] == trace_id and a["span_id"] == root_id for a in info["assessments"])
    varying = ("assessment_id", "create_time", "last_update_time", "trace_id", "span_id")
    info["assessments"] = sorted(str({k: v for k, v in a.items() if k not in varying}) for a in info["assessments"])
    spans = []
    for span in trace.data.spans:
        d = span.to_dict()
        attrs = {k: v for k, v in d["attributes"].items() if k != "mlflow.traceRequestId"}
        assert d["attributes"]["mlflow.traceRequestId"] == f'"{trace_id}"'
        spans.append((d["name"], d["parent_span_id"] is None, d["start_time_unix_nano"], d["end_time_unix_nano"],
                      d["status"], attrs, d["events"]))
    return {"info": info, "spans": spans}


def test_a_batched_trace_is_the_trace_mlflows_exporter_stores(session):
    tracker, variant = session
    tracker.batch_traces = False
    tracker.log_cell(variant, row(variant, "by-exporter")).result()
    mlflow.flush_trace_async_logging()
    tracker.batch_traces = True
    tracker.log_cell(variant, row(variant, "batched")).result()
    assert len(tracker._batch) == 0  # a batch's first trace is stored at once
    tracker.finish_variant(variant.hash, [row(variant, "by-exporter"), row(variant, "batched")], {}).result()
    old, new = stored(tracker, variant, "by-exporter"), stored(tracker, variant, "batched")
    a, b = comparable(old), comparable(new)
    # the question id is the one attribute that differs by design
    for spans in (a["spans"], b["spans"]):
        spans[0][5].pop("question_id")
    for info in (a["info"], b["info"]):
        info["tags"].pop("workbench.question_id")  # the same id as a trace tag (labels look traces up by it)
    assert a == b
    assert len(new.info.assessments) == len(SCORES) + 2  # the scores and both expectations
    assert new.info.trace_metadata["mlflow.sourceRun"] == tracker.run_ids[variant.hash]
    assert [s.name for s in new.data.spans] == ["rag", "retrieve", "generate"]


def test_every_cell_is_stored_in_batches_and_at_the_variants_end(session, monkeypatch):
    tracker, variant = session
    monkeypatch.setattr(trace_batch, "FLUSH_EVERY_S", 3600.0)  # by size only, however slow the machine
    n = BATCH + 3
    for i in range(n):
        tracker.log_cell(variant, row(variant, f"q{i}", started_at_ns=time.time_ns())).result()
    assert len(tracker._batch) == 2  # the first at once, the next BATCH when the batch was full
    run_id = tracker.run_ids[variant.hash]
    tracker.finish_variant(variant.hash, [row(variant, f"q{i}") for i in range(n)], {}).result()
    traces = tracker.client.search_traces(locations=[tracker.experiment.experiment_id], run_id=run_id, max_results=500)
    assert len(traces) == n and len(tracker._batch) == 0
    assert all(len(t.info.assessments) == len(SCORES) + 2 and len(t.data.spans) == 3 for t in traces)


def stored_count(tracker) -> int:
    """Traces in the store, read as another process would (peers.py's "first answer visible")."""
    import sqlite3

    with sqlite3.connect(tracker.cfg.tracking_uri.removeprefix("sqlite:///")) as db:
        return db.execute("SELECT count(*) FROM trace_info").fetchone()[0]


def test_the_first_trace_is_stored_at_once_and_held_ones_when_their_time_has_passed_or_the_helper_idles(
        session, monkeypatch):
    tracker, variant = session
    monkeypatch.setattr(trace_batch, "FLUSH_EVERY_S", 3600.0)
    tracker.log_cell(variant, row(variant, "first")).result()
    assert stored_count(tracker) == 1 and len(tracker._batch) == 0  # the user sees an answer at once
    tracker.log_cell(variant, row(variant, "second")).result()
    assert stored_count(tracker) == 1 and len(tracker._batch) == 1  # held for a batch
    tracker.log_cell(variant, row(variant, "third")).result()
    assert stored_count(tracker) == 1 and len(tracker._batch) == 2
    monkeypatch.setattr(trace_batch, "FLUSH_EVERY_S", 0.0)  # its time has come: the next cell stores them all
    tracker.log_cell(variant, row(variant, "fourth")).result()
    assert stored_count(tracker) == 4 and len(tracker._batch) == 0
    monkeypatch.setattr(trace_batch, "FLUSH_EVERY_S", 3600.0)
    tracker.log_cell(variant, row(variant, "fifth")).result()
    assert stored_count(tracker) == 4 and len(tracker._batch) == 1
    assert tracker.idle() is True and stored_count(tracker) == 5 and len(tracker._batch) == 0  # no job waits: stored
    assert tracker.idle() is False  # nothing held


def test_a_span_the_user_has_open_is_not_their_parent_and_still_reaches_mlflow(session):
    tracker, variant = session
    with mlflow.start_span("users-own") as users:
        tracker.log_cell(variant, row(variant, "inside")).result()
    mlflow.flush_trace_async_logging()
    tracker.finish_variant(variant.hash, [row(variant, "inside")], {}).result()
    ours = stored(tracker, variant, "inside")
    assert ours.info.trace_id != users.trace_id and [s.parent_id for s in ours.data.spans][0] is None
    theirs = tracker.client.get_trace(users.trace_id)
    assert [s.name for s in theirs.data.spans] == ["users-own"]


def test_only_database_stores_get_batches():
    assert is_database_uri("sqlite:///mlruns/mlflow.db") and is_database_uri("postgresql+psycopg2://h/db")
    assert not is_database_uri("http://localhost:5000") and not is_database_uri("file:///tmp/mlruns")


def test_the_first_trace_of_a_fresh_process_skips_pyfunc_and_is_the_same_trace(tmp_path):
    """MLflow's tracer imports `mlflow.pyfunc` (~0.4 s) as a trace starts, to read a prediction context that only
    a pyfunc model sets: a batched trace starts without it (`lean_imports.starting_a_trace`), and is still the
    trace the exporter stores once pyfunc is loaded."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        import mlflow, pandas as pd
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_trace_batch import comparable, row
        from workbench.spec import TrackingConfig, load_spec
        from workbench.tracking.mlflow_tracker import MlflowTracker

        spec = load_spec({{"name": "batch", "data": {{"corpus": {{"format": "jsonl", "path": "c.jsonl"}},
                                                     "eval": {{"format": "jsonl", "path": "e.jsonl"}}}}}})
        variant = spec.variants()[0]
        tracker = MlflowTracker(TrackingConfig(tracking_uri="sqlite:///{tmp_path}/mlflow.db",
                                               artifact_location="{tmp_path}/art"), "batch")
        tracker.start_sweep(spec, "batch", 1, {{}}).result()
        tracker.start_variant(variant, pd.DataFrame({{"question": ["q"]}})).result()
        tracker.log_cell(variant, row(variant, "batched")).result()
        print("pyfunc_after_batched", "mlflow.pyfunc" in sys.modules)
        tracker.batch_traces = False
        tracker.log_cell(variant, row(variant, "by-exporter")).result()
        mlflow.flush_trace_async_logging()
        print("pyfunc_after_exporter", "mlflow.pyfunc" in sys.modules)
        tracker.finish_variant(variant.hash, [row(variant, "batched"), row(variant, "by-exporter")], {{}}).result()
        a, b = (comparable(tracker.client.get_trace(tracker.trace_ids[(variant.hash, q)])) for q in ("by-exporter", "batched"))
        for spans in (a["spans"], b["spans"]):
            spans[0][5].pop("question_id")
        for info in (a["info"], b["info"]):
            info["tags"].pop("workbench.question_id")
        print("same", a == b)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["pyfunc_after_batched", "False", "pyfunc_after_exporter", "True", "same", "True"]
