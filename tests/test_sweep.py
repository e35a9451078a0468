"""End to end on real parts: SQuAD slice → chunk → MiniLM → Chroma / bm25s → local SmolLM2 over HTTP → MLflow."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import pytrec_eval

from workbench.spec import load_spec
from workbench.runner.sweep import run_sweep
from workbench.tracking.naming import metric_name, round_sig

from conftest import N_QUESTIONS, small_spec


def test_results_frames_have_one_row_per_variant_and_per_cell(swept):
    _, _, results = swept
    frame = results.to_frame()
    assert len(frame) == 2
    for col in ("hit_at_k", "recall_at_k", "mrr", "ndcg_at_k", "exact_match", "f1", "rouge_l",
                "latency_total_p50_s", "latency_total_p95_s", "tokens_prompt", "tokens_completion", "cost_usd"):
        assert col in frame.columns, col
    assert (frame["cost_usd"] == 0).all()  # local model, no price configured
    assert (frame["tokens_prompt"] > 0).all() and (frame["tokens_completion"] > 0).all()
    assert (frame["latency_total_p95_s"] >= frame["latency_total_p50_s"]).all()
    q = results.questions()
    assert len(q) == 2 * N_QUESTIONS
    assert q["error"].isna().all()
    assert q["answer"].map(lambda a: isinstance(a, str)).all()
    assert (q["latency_total_s"] >= q["latency_generate_s"]).all()
    assert (q["tokens_completion"] <= 16).all()
    # the SQuAD gold paragraph is the question's relevant document
    assert all(rel == [f"Super_Bowl_50/{rel[0].split('/')[1]}"] for rel in q["relevant_ids"])


def test_retrieval_metrics_equal_pytrec_eval_on_the_logged_rankings(swept):
    _, _, results = swept
    q = results.questions()
    for variant, group in q.groupby("variant"):
        k = results.variant(variant).retrieval.k
        qrels = {r.question_id: {d: 1 for d in r.relevant_ids} for r in group.itertuples()}
        run = {
            r.question_id: {d: float(100 - i) for i, d in enumerate(r.retrieved_doc_ids)} for r in group.itertuples()
        }
        ev = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}", f"recall.{k}", "recip_rank"}).evaluate(run)
        for r in group.itertuples():
            assert r.ndcg_at_k == pytest.approx(ev[r.question_id][f"ndcg_cut_{k}"])
            assert r.recall_at_k == pytest.approx(ev[r.question_id][f"recall_{k}"])
            assert r.mrr == pytest.approx(ev[r.question_id]["recip_rank"])


def test_mlflow_has_parent_and_child_runs_with_params_metrics_table_yaml_tags(swept):
    tmp, spec, results = swept
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=["t-sweep"], filter_string=f"tags.`workbench.sweep_id` = '{results.sweep_id}'")
    parents = runs[runs["tags.workbench.kind"] == "sweep"]
    children = runs[runs["tags.workbench.kind"] == "variant"]
    assert len(parents) == 1 and len(children) == 2
    assert (children["tags.mlflow.parentRunId"] == parents.iloc[0].run_id).all()
    assert set(children["tags.workbench.variant_hash"]) == {v.hash for v in results.variants}
    assert set(children["params.retrieval.kind"]) == {"dense", "hybrid"}
    assert (children["params.chunking.size_chars"] == "400").all()  # the unit in the name (recursive: chars)
    frame = results.to_frame()
    client = mlflow.MlflowClient()
    for _, child in children.iterrows():
        h = child["tags.workbench.variant_hash"]
        row = frame.loc[h[:12]]
        metrics = client.get_run(child.run_id).data.metrics
        for name in ("hit_at_k", "mrr", "ndcg_at_k", "recall_at_k", "exact_match", "f1", "latency_total_p50_s",
                     "latency_total_p95_s", "tokens_prompt", "tokens_completion", "cost_usd", "f1_ci_low", "f1_n"):
            assert metrics[metric_name(name)] == round_sig(row[name]), name  # grouped, rounded for display
        artifacts = {a.path for a in client.list_artifacts(child.run_id)}
        assert {"eval_results.json", "variant.yaml"} <= artifacts
        table = json.loads(Path(client.download_artifacts(child.run_id, "eval_results.json", str(tmp))).read_text())
        for col in ("question_id", "question", "answer", "reference_answers", "retrieved_doc_ids", "exact_match", "f1", "latency_total_s"):
            assert col in table["columns"], col
        assert len(table["data"]) == N_QUESTIONS
        variant_yaml = Path(client.download_artifacts(child.run_id, "variant.yaml", str(tmp))).read_text()
        from workbench.spec import load_variant

        assert load_variant(__import__("yaml").safe_load(variant_yaml)).hash == h
        run_inputs = client.get_run(child.run_id).inputs.dataset_inputs
        assert len(run_inputs) == 1


def test_traces_have_retrieve_and_generate_spans_per_question(swept):
    _, spec, results = swept
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    mlflow.flush_trace_async_logging()
    exp = mlflow.get_experiment_by_name("t-sweep")
    for run_id in results.run_ids.values():
        traces = mlflow.search_traces(locations=[exp.experiment_id], run_id=run_id, return_type="list")
        assert len(traces) == N_QUESTIONS
        for t in traces:
            names = [s.name for s in t.data.spans]
            assert sorted(names) == ["generate", "rag", "retrieve"]


def test_new_sweep_of_the_same_spec_reuses_chroma_collections(swept):
    tmp, spec, first = swept
    assert first.stats["index_builds"] + first.stats["index_reused"] == 1  # one (corpus, chunking, embedding)
    again = run_sweep(spec, progress=False, resume=False)
    assert again.stats["index_builds"] == 0 and again.stats["index_reused"] == 1
    assert again.sweep_id != first.sweep_id
    # deterministic decoding: the same answers as the first sweep
    a = first.questions().set_index(["variant", "question_id"])["answer"]
    b = again.questions().set_index(["variant", "question_id"])["answer"]
    assert a.sort_index().tolist() == b.sort_index().tolist()


def test_cells_are_persisted_as_they_finish(swept):
    tmp, spec, results = swept
    path = Path(spec["home"]) / "sweeps" / results.sweep_id / "cells.jsonl"
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert len(lines) == 2 * N_QUESTIONS
    assert {l["variant_hash"] for l in lines} == {v.hash for v in results.variants}


@pytest.mark.slow
def test_cli_runs_a_spec_and_prints_a_summary(tmp_path):
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(path), "--limit", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "bm25@2" in out.stdout and "f1" in out.stdout and "1 variants" in out.stdout
    assert "mlflow ui --backend-store-uri" in out.stdout
    again = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(path), "--limit", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert "returned the finished sweep as it is: 1 cells" in again.stdout
    sweep_line = [l for l in out.stdout.splitlines() if l.startswith("sweep ")][0].split(":")[0]
    assert sweep_line in again.stdout  # the same sweep id


@pytest.mark.slow  # four CLI subprocesses; test_bad_input.py checks the same errors in-process
@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda s: s["space"].update(retrieval=[{"kind": "dense", "k": 0}]), "space.retrieval.0.k"),
        (lambda s: s["data"]["corpus"].update(path="/nonexistent/corpus.json"), "/nonexistent/corpus.json"),
        (lambda s: s["space"].update(model=[{"provider": "openai", "model": "gpt-4o-mini", "api_key_env": "WB_TEST_UNSET_KEY"}]), "WB_TEST_UNSET_KEY"),
        (lambda s: s["space"].update(model=[{"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}]), "127.0.0.1:9"),
    ],
)
def test_cli_bad_input_is_one_clear_error_and_exit_2(tmp_path, mutate, needle):
    import yaml

    spec = small_spec(tmp_path)
    mutate(spec)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(path), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_limit_override_and_spec_object(tmp_path):
    spec = load_spec(small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 1}]))
    spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"enabled": False})})
    results = run_sweep(spec, limit=1, progress=False)
    assert len(results.questions()) == 1
    assert results.parent_run_id is None and results.run_ids == {}


@pytest.mark.slow
def test_retrieval_only_stage_makes_no_model_call(tmp_path, monkeypatch):
    from workbench.rag import chat as models, local_model as local_server

    def forbidden(*a, **k):
        raise AssertionError("a retrieval-only sweep must not call or start a model")

    monkeypatch.setattr(models.ChatModel, "generate", forbidden)
    monkeypatch.setattr(local_server.LocalModelServer, "start", forbidden)
    spec = small_spec(tmp_path)
    del spec["space"]["model"]
    spec["stage"] = "retrieve"
    spec["retrieval_cutoffs"] = [1, 3]
    spec["space"]["retrieval"] = [{"kind": "bm25", "k": 3}, {"kind": "dense", "k": 3}]
    results = run_sweep(spec, progress=False)
    frame = results.to_frame()
    assert len(frame) == 2 and frame["label"].str.contains("bm25@3").any()
    for col in ("ndcg_at_1", "recall_at_3", "mrr_at_3", "hit_at_1", "latency_retrieve_p50_s"):
        assert col in frame.columns, col
    assert "f1" not in frame.columns and "tokens_prompt" not in frame.columns
    q = results.questions()
    assert "answer" not in q.columns
    assert (q["recall_at_3"] >= q["recall_at_1"]).all()
    assert all(v.model is None and v.prompt is None for v in results.variants)


def test_retrieval_stage_rejects_a_model_axis(tmp_path):
    from workbench.errors import ConfigError

    spec = small_spec(tmp_path)
    spec["stage"] = "retrieve"
    with pytest.raises(ConfigError, match="remove space.model"):
        load_spec(spec)


@pytest.mark.slow
def test_cancel_keeps_finished_cells_and_marks_runs_killed(tmp_path):
    import threading

    cancel = threading.Event()
    seen = []

    def on_cell(row):
        seen.append(row["question_id"])
        if len(seen) == 2:
            cancel.set()

    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 6
    results = run_sweep(spec, progress=False, on_cell=on_cell, cancel=cancel)
    assert results.status == "KILLED"
    # a call already admitted when cancel was set still finishes (a result is never thrown away)
    assert 2 <= len(results.rows) <= 3 and len(results.rows) == len(seen)
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    assert client.get_run(results.parent_run_id).info.status == "KILLED"
    (run_id,) = results.run_ids.values()
    assert client.get_run(run_id).info.status == "KILLED"
    assert client.get_run(run_id).data.metrics["questions"] == len(results.rows)
