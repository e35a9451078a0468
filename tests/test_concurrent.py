"""Two sweeps at once on the same workbench home and MLflow store: both complete, neither is corrupted."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint

pytestmark = pytest.mark.slow  # two real sweeps in subprocesses

N = 5


def test_two_sweeps_at_once_share_home_and_store(tmp_path):
    with LatencyEndpoint(latency=0.1) as ep:
        procs, specs = [], []
        for k in (2, 3):  # same corpus and chunking: both need the same Chroma collection at the same time
            spec = small_spec(tmp_path, retrieval=[{"kind": "dense", "k": k}, {"kind": "bm25", "k": k}])
            spec["name"] = f"concurrent-k{k}"
            spec["data"]["eval"]["limit"] = N
            spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
            # the same Chroma collection and embedding cache, filled by the endpoint: not the local MiniLM twice
            # at once on the corpus (the two processes' ONNX runs were most of this test's time)
            spec["space"]["embedding"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
            path = tmp_path / f"spec{k}.yaml"
            path.write_text(yaml.safe_dump(spec))
            specs.append(spec)
            procs.append(subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(path), "--no-progress"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    records = sorted((Path(specs[0]["home"]) / "sweeps").glob("*/cells.jsonl"))
    assert len(records) == 2
    for cells in records:
        rows = [json.loads(l) for l in cells.read_text().splitlines()]
        assert len(rows) == 2 * N and all(r["error"] is None for r in rows)
        assert len({(r["variant_hash"], r["question_id"]) for r in rows}) == 2 * N
    mlflow.set_tracking_uri(specs[0]["tracking"]["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=["t-sweep"], output_format="list")
    parents = [r for r in runs if r.data.tags["workbench.kind"] == "sweep"]
    children = [r for r in runs if r.data.tags["workbench.kind"] == "variant"]
    assert len(parents) == 2 and len(children) == 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    for parent in parents:
        mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert len(mine) == 2 and all(c.data.metrics["questions"] == N for c in mine)
