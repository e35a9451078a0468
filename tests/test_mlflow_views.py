"""What MLflow's UI shows of a sweep, read from a real sqlite store: a trace per question carrying its
scores (Feedback) and reference answers (Expectation) the way mlflow.genai.evaluate logs them, run names
that start with the label, colours, the user's source, the parent's duration, grouped and rounded
metrics, params with units, and a copied project that never writes into the original."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from conftest import ROOT, small_spec
from workbench.errors import TrackingError
from workbench.runner.sweep import run_sweep
from workbench.spec import ChunkingConfig, TrackingConfig, load_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.tracking.mlflow_tracker import MlflowTracker, check_tracking_uri, run_source
from workbench.tracking.naming import PALETTE, metric_name, mlflow_metrics, mlflow_params, round_sig

N = 12  # questions per variant, every one traced (the default)
ANSWER_METRICS = ("exact_match", "f1", "rouge_l", "string_similarity")


def sweep_spec(tmp: Path, base_url: str) -> dict:
    spec = small_spec(tmp, retrieval=[{"kind": "bm25", "k": 2}], prompt=[
        {"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 8}]
    assert "max_traces_per_variant" not in spec["tracking"]  # the default: every question
    return spec


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A real 2-variant sweep (fake endpoint, BM25) logged through the helper process to a sqlite store."""
    tmp = tmp_path_factory.mktemp("views")
    with LatencyEndpoint(latency=0.02) as ep:
        spec = sweep_spec(tmp, ep.base_url)
        t0 = time.time()
        results = run_sweep(spec, progress=False)
        t1 = time.time()
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    exp = client.get_experiment_by_name(spec["experiment"])
    return dict(spec=spec, results=results, client=client, exp=exp, t0=t0, t1=t1)


def traces_of(logged, run_id: str) -> list:
    return logged["client"].search_traces(locations=[logged["exp"].experiment_id], run_id=run_id)


def root(trace):
    return next(s for s in trace.data.spans if s.parent_id is None)


def test_every_question_is_a_trace_with_its_scores_and_expectations(logged):
    results, q = logged["results"], logged["results"].questions()
    for variant in results.variants:
        run_id = results.run_ids[variant.hash]
        traces = traces_of(logged, run_id)
        assert len(traces) == N  # every question (the default)
        for trace in traces:
            assert trace.info.trace_metadata["mlflow.sourceRun"] == run_id
            qid = root(trace).attributes["question_id"]
            row = q[(q["variant_hash"] == variant.hash) & (q["question_id"] == qid)].iloc[0]
            feedback = {a.name: a for a in trace.info.assessments if a.feedback is not None}
            expected = {a.name: a for a in trace.info.assessments if a.expectation is not None}
            for name in (*ANSWER_METRICS, "hit_at_k", "mrr", "ndcg_at_k", "recall_at_k"):
                a = feedback[name]
                assert a.value == round_sig(row[name]), (name, a.value, row[name])
                assert (a.source.source_type, a.source.source_id) == ("CODE", "workbench")
                assert a.metadata["mlflow.assessment.sourceRunId"] == run_id  # as genai.evaluate links them
                assert a.span_id == root(trace).span_id
            assert expected["expected_response"].value == row["reference_answers"][0]
            assert expected["expected_response"].source.source_type == "HUMAN"
            assert expected["relevant_ids"].value == list(row["relevant_ids"])


def test_runs_read_label_first_with_distinct_colours_the_users_source_and_the_sweeps_duration(logged):
    results, client = logged["results"], logged["client"]
    colours = []
    for variant in results.variants:
        run = client.get_run(results.run_ids[variant.hash])
        assert run.info.run_name.startswith(variant.label()) and variant.short_hash[:7] in run.info.run_name
        assert run.data.tags["mlflow.runType"] == "genai_evaluate"
        colours.append(run.data.tags["mlflow.runColor"])
        assert run.data.tags["mlflow.source.name"] == run_source()["mlflow.source.name"]  # this process (pytest)
        assert "worker" not in run.data.tags["mlflow.source.name"]  # never the helper process
    assert colours == list(PALETTE[:2])  # distinct, in the spec's order
    parent = client.get_run(results.parent_run_id)
    assert parent.info.run_name.startswith(f"t-sweep · 2 variants × {N} q · ")
    assert "tracking" not in parent.data.tags["mlflow.source.name"]
    assert parent.data.tags["mlflow.source.type"] == "LOCAL"
    duration_s = (parent.info.end_time - parent.info.start_time) / 1000
    assert duration_s == pytest.approx(results.wall_s, abs=0.002)  # the sweep's wall time, not the helper's
    assert logged["t0"] * 1000 - 1 <= parent.info.start_time <= logged["t1"] * 1000
    store = logged["spec"]["tracking"]["tracking_uri"].removeprefix("sqlite:///")
    with sqlite3.connect(store) as db:  # write-ahead log: a trace costs half (trace_assessments benchmark)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_metrics_are_grouped_headline_first_and_rounded_and_params_carry_units(logged):
    results, client = logged["results"], logged["client"]
    frame = results.to_frame()
    for variant in results.variants:
        run = client.get_run(results.run_ids[variant.hash])
        metrics, row = run.data.metrics, frame.loc[variant.short_hash]
        means = [k for k in metrics if k.endswith("/mean")]
        assert sorted(means) == sorted(f"{m}/mean" for m in ("hit_at_k", "mrr", "ndcg_at_k", "recall_at_k", *ANSWER_METRICS))
        assert metrics["f1/mean"] == round_sig(row["f1"]) and metrics["f1/mean_ci_low"] == round_sig(row["f1_ci_low"])
        assert metrics["f1/mean_ci_high"] == round_sig(row["f1_ci_high"]) and metrics["f1/n"] == row["f1_n"] == N
        assert metrics["questions"] == N and metrics["failed_cells"] == 0  # measurements: the last section
        assert metrics["latency_total_p95_s"] == round_sig(row["latency_total_p95_s"])
        assert all(v == round_sig(v) for v in metrics.values())  # 4 significant digits, e.g. 0.4667
        # MLflow's chart view: prefixed sections sorted by name, un-prefixed ones last; in each, by name
        sections = sorted({k.split("/")[0] for k in metrics if "/" in k})
        assert sections == sorted(m for m in (*ANSWER_METRICS, "hit_at_k", "mrr", "ndcg_at_k", "recall_at_k"))
        assert all(sorted(k for k in metrics if k.startswith(f"{s}/"))[0] == f"{s}/mean" for s in sections)
        params = run.data.params
        assert params["chunking.size_chars"] == "400" and params["chunking.overlap_chars"] == "40"
        assert "chunking.size" not in params
    assert results.to_frame().loc[results.variants[0].short_hash, "f1"] == frame.loc[results.variants[0].short_hash, "f1"]


def test_naming_is_pure_and_keeps_the_numbers_the_analysis_uses():
    assert round_sig(0.4666666666666666) == 0.4667 and round_sig(1234567.0) == 1235000.0 and round_sig(0.0) == 0.0
    assert round_sig(0.000123456) == 0.0001235
    flat = {"questions": 3.0, "f1": 0.1, "f1_ci_low": 0.0, "f1_ci_high": 0.2, "f1_n": 3.0, "ndcg_at_10_ci_low": 0.1,
            "faithfulness_failed": 1.0, "tokens_prompt_mean": 12.5, "cost_usd": 0.0, "mrr": 0.25}
    assert list(mlflow_metrics(flat)) == ["f1/mean", "mrr/mean", "questions", "tokens_prompt_mean", "cost_usd",
                                          "f1/mean_ci_low", "f1/mean_ci_high", "f1/n", "ndcg_at_10/mean_ci_low",
                                          "faithfulness/failed"]  # the means first: the runs table's first columns
    assert metric_name("wall_s") == "wall_s"  # the parent's, read back by load_sweep: unchanged
    spec = load_spec(small_spec(Path("/tmp/unused"), chunking=[
        {"strategy": "token", "size": 128, "overlap": 16}, {"strategy": "none", "size": 500, "overlap": 0}]))
    token, whole = (next(v for v in spec.variants() if v.chunking.strategy == s) for s in ("token", "none"))
    assert (mlflow_params(token)["chunking.size_tokens"], mlflow_params(token)["chunking.overlap_tokens"]) == (128, 16)
    assert not any(k.startswith("chunking.size") or k.startswith("chunking.overlap") for k in mlflow_params(whole))
    assert token.flat_params()["chunking.size"] == 128  # the spec's own names (and the analysis frame's) unchanged
    assert ChunkingConfig(size=500).model_dump()["size"] == 500


def cell_row(variant, qid: str, **extra) -> dict:
    return {"variant_hash": variant.hash, "variant": variant.short_hash, "question_id": qid, "question": f"Who {qid}?",
            "messages": [{"role": "user", "content": "q"}], "reference_answers": ["Denver Broncos", "Broncos"],
            "relevant_ids": ["d1"], "retrieved_chunk_ids": ["d1-0"], "retrieved_chunk_doc_ids": ["d1"],
            "contexts": ["The Denver Broncos won."], "started_at_ns": time.time_ns(), "latency_retrieve_s": 0.01,
            **extra}


def test_a_failed_cell_carries_its_error_and_judged_scores_join_their_trace_later(tmp_path):
    """In process on a real store: the failed cell's answer metrics are error Feedbacks naming the cause;
    a judged score (computed after the trace was written) is added to the same trace at finish_variant."""
    spec = load_spec(small_spec(tmp_path))
    variant = spec.variants()[0]
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db", artifact_location=str(tmp_path / "art"))
    tracker = MlflowTracker(cfg, "views", source={"mlflow.source.name": "my_notebook.ipynb", "mlflow.source.type": "NOTEBOOK"})
    tracker.start_sweep(spec, "s1", 1, {"data.eval.questions": 2}).result()
    run_id = tracker.start_variant(variant, pd.DataFrame({"question": ["a", "b"]})).result()
    ok = cell_row(variant, "q1", answer="Denver Broncos", latency_generate_s=0.1, error=None, hit_at_k=1.0,
                  exact_match=1.0, f1=2 / 3)
    failed = cell_row(variant, "q2", answer=None, error="HTTP 500 from the endpoint after 3 retries", hit_at_k=0.0)
    for row in (ok, failed):
        tracker.log_cell(variant, row).result()
    judged = [{**ok, "faithfulness": 0.8}, {**failed, "faithfulness_error": "judge reply was not JSON"}]
    tracker.finish_variant(variant.hash, judged, {"questions": 2.0, "failed_cells": 1.0, "f1": 2 / 3}).result()
    tracker.finish_sweep("FINISHED", {"wall_s": 1.5}).result()
    assert tracker.close() is None

    client = mlflow.MlflowClient(cfg.tracking_uri)
    traces = {root(t).attributes["question_id"]: t for t in
              client.search_traces(locations=[tracker.experiment.experiment_id], run_id=run_id)}
    good = {a.name: a for a in traces["q1"].info.assessments}
    assert good["f1"].value == 0.6667 and good["exact_match"].value == 1.0 and good["hit_at_k"].value == 1.0
    assert good["faithfulness"].value == 0.8  # judged later, same trace
    assert good["reference_answers"].value == ["Denver Broncos", "Broncos"]
    bad = {a.name: a for a in traces["q2"].info.assessments}
    assert bad["hit_at_k"].value == 0.0  # retrieval was scored before generation failed
    for name in ANSWER_METRICS:
        assert bad[name].value is None and bad[name].error.error_code == "CELL_FAILED"
        assert "HTTP 500" in bad[name].error.error_message
    assert bad["faithfulness"].error.error_message == "judge reply was not JSON"
    run = client.get_run(run_id)
    assert run.data.tags["mlflow.source.name"] == "my_notebook.ipynb" and run.data.metrics["f1/mean"] == 0.6667
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.end_time - parent.info.start_time == 1500


def test_a_copied_project_never_writes_into_the_original_folder(tmp_path):
    """MLflow stores an absolute artifact location at experiment creation: in a copied project the sweep
    stops with what to do, and a new experiment name in the copy keeps every artifact inside the copy."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    code = ("import sys; from workbench.spec import TrackingConfig; "
            "from workbench.tracking.mlflow_tracker import MlflowTracker; "
            "t = MlflowTracker(TrackingConfig(), sys.argv[1]); t.open(); "
            "t.client.log_text(t.client.create_run(t.experiment.experiment_id).info.run_id, 'x', 'a.txt')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code, "exp"], cwd=original, env=env, check=True, capture_output=True)
    shutil.copytree(original, copy)
    before = sorted(p for p in original.rglob("*") if p.is_file())
    os.chdir(copy)
    try:
        with pytest.raises(TrackingError, match=r"keeps its artifacts in .*original.*copied.*new experiment name"):
            check_tracking_uri(TrackingConfig(), "exp")
        check_tracking_uri(TrackingConfig(), "exp-copy")  # the advice works
    finally:
        os.chdir(ROOT)
    subprocess.run([sys.executable, "-c", code, "exp-copy"], cwd=copy, env=env, check=True, capture_output=True)
    assert sorted(p for p in original.rglob("*") if p.is_file()) == before  # the original untouched
    assert len(list((copy / "mlruns" / "artifacts").rglob("a.txt"))) == 2  # the copied one and the new one
