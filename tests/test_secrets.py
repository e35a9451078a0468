"""A planted API key must never reach MLflow, caches, sweep records, logs or exports."""

import os
from pathlib import Path

import pytest

from conftest import small_spec
from workbench.latency_endpoint import LatencyEndpoint
from workbench.sweep import run_sweep

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
