"""The same sweep on a Ray cluster, a Chroma server and an MLflow server, all real, all on 127.0.0.1
(issue 19): `ray start --head` plus one worker node process, `chroma run`, `mlflow server`. The model is
the fake endpoint, to keep it fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import small_spec
from test_tracking_server import MlflowServer, free_port
from workbench.processes import child_env
from workbench.testing.clusters import ChromaServer, RayCluster
from workbench.testing.fake_endpoint import LatencyEndpoint

pytestmark = pytest.mark.slow
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the test cluster runs without token auth (127.0.0.1 only)
N = 6


@pytest.fixture(scope="module")
def cluster():
    import ray

    c = RayCluster(nodes=1, head_cpus=2, node_cpus=2)
    try:
        c.start()
        ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.stop()


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.1) as ep:
        yield ep


def _spec(tmp: Path, ep: LatencyEndpoint, n: int = N, **space) -> dict:
    spec = small_spec(tmp, **space)
    spec["data"]["eval"]["limit"] = n
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
    return spec


def _ray(spec: dict, c: RayCluster, **execution) -> dict:
    spec["execution"] = {"backend": "ray", "ray_address": c.address, "workers": 2, "concurrency": 4, **execution}
    return spec


def _cells(home: Path) -> list[dict]:
    records = list((home / "sweeps").iterdir()) if (home / "sweeps").exists() else []
    assert len(records) <= 1, records
    cells = records[0] / "cells.jsonl" if records else None
    if cells is None or not cells.exists():
        return []
    return [json.loads(line) for line in cells.read_text().splitlines()]


def _same(rows: list[dict]) -> dict:
    keep = ("answer", "retrieved_chunk_ids", "f1", "exact_match", "recall_at_k", "ndcg_at_k", "error")
    return {(r["variant_hash"], r["question_id"]): {k: r.get(k) for k in keep} for r in rows}


def test_local_and_ray_give_the_same_answers_and_metrics_and_the_cells_ran_on_workers(tmp_path, cluster, endpoint):
    import mlflow
    from ray.util.state import list_tasks

    from workbench import run_sweep

    space = {"retrieval": [{"kind": "dense", "k": 3}, {"kind": "bm25", "k": 3}]}
    local = run_sweep(_spec(tmp_path / "local", endpoint, **space), progress=False)
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow", free_port()).start()
    try:
        with ChromaServer(tmp_path / "chroma") as chroma:
            spec = _ray(_spec(tmp_path / "ray", endpoint, **space), cluster, requests_per_minute=6000)
            spec["vector_store"] = {"kind": "chroma_server", "host": chroma.host, "port": chroma.port}
            spec["tracking"]["tracking_uri"] = server.uri
            remote = run_sweep(spec, progress=False)
            import chromadb

            names = {c.name for c in chromadb.HttpClient(host=chroma.host, port=chroma.port).list_collections()}
            # the dense winner, exported and loaded on a fresh home, reads the server's collection and answers
            # the same (its host and port came from the export; nothing was embedded again, nothing local)
            dense = next(v for v in remote.variants if v.retrieval.kind == "dense")
            path = remote.export(dense.hash, tmp_path / "winner.yaml", log_to_mlflow=False)
            assert yaml.safe_load(path.read_text())["vector_store"] == {
                "kind": "chroma_server", "host": chroma.host, "port": chroma.port, "ssl": False}
            from workbench import load_pipeline

            rows = [r for r in remote.rows if r["variant_hash"] == dense.hash]
            with load_pipeline(path, home=tmp_path / "prod") as pipe:
                answers = [pipe.answer(r["question"]) for r in rows]
            assert [a.answer for a in answers] == [r["answer"] for r in rows]
            assert [[c.chunk_id for c in a.contexts] for a in answers] == [r["retrieved_chunk_ids"] for r in rows]
            assert not (tmp_path / "prod" / "chroma").exists()
            assert {c.name for c in chromadb.HttpClient(host=chroma.host, port=chroma.port).list_collections()} == names
        assert remote.status == "FINISHED" and len(remote.rows) == len(local.rows) == 2 * N
        assert _same(remote.rows) == _same(local.rows)  # same answers, retrieval and scores, cell by cell
        metrics = ["f1", "exact_match", "recall_at_k", "ndcg_at_k"]
        assert (remote.to_frame()[metrics].round(9).to_dict() == local.to_frame()[metrics].round(9).to_dict())
        assert any(n.startswith("wb-") for n in names)  # the dense index lives in the Chroma server
        # Ray's state API: every cell ran as a CellWorker task in a worker process, not in this driver
        # (the cluster's own address: another Ray on this machine would make "auto" ambiguous)
        tasks = list_tasks(address=cluster.address, filters=[("func_or_class_name", "=", "CellWorker.run_cells")],
                           limit=10_000, detail=True)
        finished = [t for t in tasks if t.state == "FINISHED"]
        assert 1 <= len(finished) < 2 * N  # the cells went in batches, not one actor call each
        assert {t.worker_pid for t in finished}.isdisjoint({os.getpid()})
        assert remote.stats["ray_workers"] == 2 and len(remote.stats["ray_worker_pids"]) == 2
        # the driver logged it to the MLflow server (workers never write MLflow)
        client = mlflow.MlflowClient(server.uri)
        exp = client.get_experiment_by_name(spec["experiment"])
        runs = client.search_runs([exp.experiment_id], "tags.`workbench.kind` != 'sweep'")
        assert sorted(r.info.run_id for r in runs if r.info.run_id in remote.run_ids.values()) == sorted(remote.run_ids.values())
    finally:
        server.kill()


def test_a_killed_worker_loses_no_cell_and_writes_none_twice(tmp_path, cluster, endpoint):
    from ray.util.state import list_actors

    from workbench import run_sweep

    spec = _ray(_spec(tmp_path, endpoint, n=12, retrieval=[{"kind": "bm25", "k": 3}, {"kind": "bm25", "k": 2}]),
                cluster)
    spec["tracking"]["enabled"] = False
    killed = []

    def on_cell(row):
        if not killed:  # after the first cell: the others are in flight or queued on the workers
            alive = list_actors(address=cluster.address,
                                filters=[("class_name", "=", "CellWorker"), ("state", "=", "ALIVE")])
            if alive:
                os.kill(alive[0].pid, signal.SIGKILL)
                killed.append(alive[0].pid)

    results = run_sweep(spec, progress=False, on_cell=on_cell)
    assert killed, "no worker was killed"
    assert results.status == "FINISHED" and len(results.rows) == 24
    assert not [r for r in results.rows if r.get("error")]
    cells = _cells(Path(spec["home"]))
    keys = [(r["variant_hash"], r["question_id"]) for r in cells]
    assert len(keys) == len(set(keys)) == 24  # each cell written once, none lost


def test_a_killed_driver_resumes_into_the_same_sweep_and_a_driver_without_judge_never_imports_ragas(
        tmp_path, cluster, endpoint):
    spec = _ray(_spec(tmp_path, endpoint, n=12, retrieval=[{"kind": "bm25", "k": 3}]), cluster, concurrency=2)
    spec["tracking"]["enabled"] = False
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    endpoint.configure(latency=0.5)
    try:
        driver = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(path), "--no-progress"],
                                  stdout=subprocess.DEVNULL, stderr=(tmp_path / "driver.log").open("wb"),
                                  env={**child_env(), "RAY_AUTH_MODE": "disabled"}, start_new_session=True)
        home, deadline = Path(spec["home"]), time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            if len(_cells(home)) >= 3:
                break
            time.sleep(0.2)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-2000:]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        before = len(_cells(home))
        assert 3 <= before < 12
    finally:
        endpoint.configure(latency=0.1)
    # the resume is a fresh driver process too, which says what it imported: a Ray driver with no LLM judge
    # never loads ragas (the workers score the answers), though the spec asks for answer metrics
    code = f"""
import sys, yaml
from workbench import run_sweep
r = run_sweep(yaml.safe_load(open({str(path)!r})), progress=False)
print(r.status, len(r.rows), any("resumed sweep" in n for n in r.notes), r.stats["ray_workers"],
      sorted(m for m in sys.modules.copy() if m.split(".")[0] == "ragas")[:3])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**child_env(), "RAY_AUTH_MODE": "disabled"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "FINISHED 12 True 2 []", out.stdout[-2000:]
    keys = [r["question_id"] for r in _cells(home)]
    assert len(keys) == len(set(keys)) == 12
    assert all(r.get("answer") and r.get("f1") is not None for r in _cells(home))  # answered and scored


def test_a_budget_holds_across_ray_workers_and_the_judge_and_a_larger_one_resumes_with_no_repeated_call(
        tmp_path, cluster, endpoint):
    """The cluster's one guard (runner.ray_budget): 2 workers with 4 calls in flight never pass max_calls; the
    stop is the local backend's (KILLED children, the parent tagged, CLI exit 3); a larger cap resumes asking no
    answer twice, and the judge on the driver counts against the same cap. Two runs only: each starts its
    workers (~10-15 s on a loaded machine)."""
    from typer.testing import CliRunner

    from memory_tracker import MemoryTracker
    from workbench import run_sweep
    from workbench.cli import BUDGET_EXIT, app

    spec = _ray(_spec(tmp_path, endpoint, retrieval=[{"kind": "bm25", "k": 3}, {"kind": "bm25", "k": 2}]), cluster)
    spec["tracking"]["enabled"] = False
    spec["judge"] = {"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url,
                     "metrics": ["context_recall", "faithfulness"], "max_tokens": 64}
    tracker, endpoint_calls = MemoryTracker(), lambda: endpoint.stats()["chat_calls"]
    endpoint.reset_stats()
    stopped = run_sweep({**spec, "budget": {"max_calls": 5}}, progress=False, tracker=tracker)
    assert endpoint_calls() == 5  # never a call past the cap, with 8 cells in flight over 2 workers
    assert stopped.status == "KILLED" and stopped.stats["stopped_by"] == "budget" and len(stopped.rows) == 5
    assert any(n.startswith("stopped by budget: max_calls 5") for n in stopped.notes)
    (parent,) = [r for r in tracker.runs.values() if r["kind"] == "sweep"]
    assert parent["status"] == "KILLED" and parent["tags"]["workbench.stopped_by"] == "budget"
    assert parent["metrics"]["budget.calls"] == 5
    children = [r for r in tracker.runs.values() if r["kind"] == "variant"]
    assert children and all(c["status"] == "KILLED" for c in children)

    cap = 2 * N + 4  # every answer, then 4 judge calls (3 per cell: the driver's judge asks the same ledger)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    again = CliRunner().invoke(app, ["run", str(path), "--no-progress", "--max-calls", str(cap)])
    assert again.exit_code == BUDGET_EXIT, again.output
    assert f"stopped by budget: max_calls {cap}" in again.output
    assert endpoint_calls() == cap  # the first run's 5 counted; nothing past the cap, judge calls included
    rows = {(r["variant_hash"], r["question_id"]): r for r in _cells(Path(spec["home"]))}  # the last write wins
    assert len(rows) == 2 * N and not [r for r in rows.values() if r.get("error")]
    assert sum(r.get("judge_calls", 0) for r in rows.values()) == 4  # so 2N answer calls: none asked twice
