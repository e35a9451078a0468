"""A planted API key must never reach MLflow, caches, sweep records, logs or exports."""

import os
from pathlib import Path

import pytest

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.runner.sweep import run_sweep

pytestmark = pytest.mark.slow  # real sweeps

PLANTED = "sk-wb-PLANTED-9f8e7d6c5b4a3f2e1d0c"


def test_planted_key_appears_nowhere_the_workbench_wrote(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("WB_PLANTED_KEY", PLANTED)
    with LatencyEndpoint(latency=0.01) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
        spec["space"]["model"] = [
            {"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url, "api_key_env": "WB_PLANTED_KEY"}
        ]
        results = run_sweep(spec, progress=False)
        results.export(results.variants[0].short_hash, tmp_path / "export" / "winner.yaml")
    assert results.questions()["answer"].notna().all()  # the key was used: the calls went through
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in written) and any(p.name == "cells.jsonl" for p in written)
    hits = [str(p) for p in written if PLANTED.encode() in p.read_bytes()]
    assert hits == []
    out, err = capfd.readouterr()
    assert PLANTED not in out and PLANTED not in err


def test_redaction_of_logged_questions_contexts_and_answers(tmp_path):
    """With tracking.redact, personal data in the corpus and questions never reaches MLflow."""
    import json

    import mlflow

    from test_bad_input import jsonl_spec

    docs = [{"id": "a", "text": "Write to jane.doe@example.com or call +1 415-555-0132 for tickets."},
            {"id": "b", "text": "The stadium opened in 2014."}]
    qs = [{"id": "q1", "question": "Is jane.doe@example.com the ticket contact?", "reference_answers": ["yes"],
           "relevant_ids": ["a"]}]
    with LatencyEndpoint(latency=0.01) as ep:
        spec = jsonl_spec(tmp_path, docs=docs, qs=qs)
        spec["space"]["retrieval"] = [{"kind": "bm25", "k": 2}]
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
        spec["tracking"]["redact"] = True
        results = run_sweep(spec, progress=False)
    assert "jane.doe@example.com" in results.questions()["question"].iloc[0]  # in memory: the user's own data
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    run_id = results.run_ids[results.variants[0].hash]
    table = Path(client.download_artifacts(run_id, "eval_results.json", str(tmp_path / "dl"))).read_text()
    assert "[EMAIL]" in table and "jane.doe@example.com" not in table and "415-555-0132" not in table
    store = [p for p in (tmp_path / "mlruns").rglob("*") if p.is_file()]
    assert not [p for p in store if b"jane.doe@example.com" in p.read_bytes()]
