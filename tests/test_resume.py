"""Kill -9 a real sweep subprocess at a random point, run the same spec again: nothing lost, nothing doubled."""

import json
import os
import random
import signal
import threading
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.runner.sweep import run_sweep

pytestmark = pytest.mark.slow  # real sweeps, one killed in a subprocess

N = 6


@pytest.fixture(scope="module")
def endpoint():
    # 0.1 s a call at concurrency 1: a 12-cell sweep lasts >1 s, long enough to be killed mid-way (polled every
    # 0.05 s); ~8 uncached sweeps here slept 38 s at 0.4 s a call
    with LatencyEndpoint(latency=0.1) as ep:
        yield ep


def remote_spec(tmp_path: Path, base_url: str) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}, {"kind": "dense", "k": 2}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 16}]
    spec["execution"] = {"concurrency": 1}
    return spec


def test_kill_minus_9_then_resume_completes_only_missing_cells(tmp_path, endpoint):
    spec = remote_spec(tmp_path, endpoint.base_url)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    endpoint.reset_stats()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(path), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    kill_after = random.Random(os.getpid()).randint(2, 2 * N - 3)  # a random point inside the sweep
    sweeps = Path(spec["home"]) / "sweeps"
    deadline = time.time() + 240
    cells = []
    while time.time() < deadline and proc.poll() is None:
        cells = list(sweeps.glob("*/cells.jsonl"))
        if cells and len(cells[0].read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (cells_path,) = cells
    before = {(r["variant_hash"], r["question_id"]) for r in map(json.loads, cells_path.read_text().splitlines())}
    assert kill_after <= len(before) < 2 * N
    status = json.loads((cells_path.parent / "status.json").read_text())
    assert status["status"] == "RUNNING"  # what kill -9 leaves behind
    calls_before = endpoint.stats()["chat_calls"]

    results = run_sweep(spec, progress=False)

    assert results.sweep_id == cells_path.parent.name  # resumed, not a new sweep
    keys = [(r["variant_hash"], r["question_id"]) for r in results.rows]
    assert len(keys) == 2 * N and len(set(keys)) == 2 * N  # 0 lost, 0 duplicated
    resumed_calls = endpoint.stats()["chat_calls"] - calls_before
    assert resumed_calls <= 2 * N - len(before)  # finished cells were not asked again
    assert results.status == "FINISHED"
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    runs = mlflow.search_runs(
        experiment_names=["t-sweep"], filter_string=f"tags.`workbench.sweep_id` = '{results.sweep_id}'",
        output_format="list",
    )
    parents = [r for r in runs if r.data.tags["workbench.kind"] == "sweep"]
    children = [r for r in runs if r.data.tags["workbench.kind"] == "variant"]
    assert len(parents) == 1 and parents[0].info.run_id == results.parent_run_id
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["workbench.variant_hash"] for c in children} == {v.hash for v in results.variants}
    for child in children:
        assert child.data.metrics["questions"] == N
        table = json.loads(Path(client.download_artifacts(child.info.run_id, "eval_results.json", str(tmp_path))).read_text())
        assert len(table["data"]) == N
    assert not [r for r in runs if r.info.status == "RUNNING"]


def _sweep_runs(spec: dict) -> list:
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    return mlflow.search_runs(experiment_names=["t-sweep"], output_format="list")


def test_identical_rerun_returns_the_finished_sweep_without_running_anything(tmp_path, endpoint):
    spec = remote_spec(tmp_path, endpoint.base_url)
    first = run_sweep(spec, progress=False)
    runs_before = {r.info.run_id for r in _sweep_runs(spec)}
    endpoint.reset_stats()
    seen = []
    again = run_sweep(spec, progress=False, on_cell=seen.append)
    assert again.sweep_id == first.sweep_id and again.status == "FINISHED"
    assert endpoint.stats()["chat_calls"] == 0 and again.stats["reused_cells"] == 2 * N
    assert {r.info.run_id for r in _sweep_runs(spec)} == runs_before  # nothing logged twice
    assert again.run_ids == first.run_ids and again.parent_run_id == first.parent_run_id
    assert len(seen) == 2 * N  # the live table still gets every row
    pd.testing.assert_frame_equal(again.to_frame(), first.to_frame())
    assert any("identical to finished sweep" in n for n in again.notes)

    # resume=False: a new sweep and new runs, every answer from the generation cache
    new = run_sweep(spec, progress=False, resume=False)
    assert new.sweep_id != first.sweep_id and endpoint.stats()["chat_calls"] == 0
    assert new.stats["generation_cache_hits"] == 2 * N
    a = first.questions().set_index(["variant", "question_id"])["answer"].sort_index()
    b = new.questions().set_index(["variant", "question_id"])["answer"].sort_index()
    assert a.tolist() == b.tolist()
    assert new.to_frame()["latency_total_p50_s"].tolist() == pytest.approx(first.to_frame()["latency_total_p50_s"].tolist(), rel=0.5)

    # --no-cache: the models are asked again
    run_sweep(spec, progress=False, no_cache=True)
    assert endpoint.stats()["chat_calls"] == 2 * N


def test_rerun_is_a_new_sweep_when_a_logged_run_was_deleted_or_the_data_changed(tmp_path, endpoint):
    spec = remote_spec(tmp_path, endpoint.base_url)
    first = run_sweep(spec, progress=False)
    mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).delete_run(next(iter(first.run_ids.values())))
    endpoint.reset_stats()
    again = run_sweep(spec, progress=False)
    assert again.sweep_id != first.sweep_id and len(again.run_ids) == 2
    assert endpoint.stats()["chat_calls"] == 0  # still no model calls: the answers are cached
    # the same spec over a changed corpus file is not the same sweep
    corpus = Path(spec["data"]["corpus"]["path"])
    data = json.loads(corpus.read_text())
    data["data"][0]["paragraphs"][0]["context"] += " An added sentence."
    copy = tmp_path / "changed.json"
    copy.write_text(json.dumps(data))
    spec["data"]["corpus"]["path"] = spec["data"]["eval"]["path"] = str(copy)
    path_spec = run_sweep(spec, progress=False)
    copy.write_text(json.dumps(data).replace("An added sentence.", "Another sentence."))
    changed = run_sweep(spec, progress=False)
    assert changed.sweep_id != path_spec.sweep_id
    assert changed.data_info["data.corpus.digest"] != path_spec.data_info["data.corpus.digest"]


def test_changed_prompt_calls_the_model_only_for_its_cells(tmp_path, endpoint):
    spec = remote_spec(tmp_path, endpoint.base_url)
    run_sweep(spec, progress=False)
    spec["space"]["prompt"] = [
        {"name": "default"},
        {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"},
    ]
    endpoint.reset_stats()
    results = run_sweep(spec, progress=False)
    assert len(results.variants) == 4
    assert endpoint.stats()["chat_calls"] == 2 * N  # only the new prompt's cells


def test_a_cancelled_sweep_is_not_resumed_over_changed_data(tmp_path, endpoint):
    copy = tmp_path / "corpus.json"
    copy.write_text(Path(remote_spec(tmp_path, endpoint.base_url)["data"]["corpus"]["path"]).read_text())
    spec = remote_spec(tmp_path, endpoint.base_url)
    spec["data"]["corpus"]["path"] = spec["data"]["eval"]["path"] = str(copy)
    cancel = threading.Event()
    first = run_sweep(spec, progress=False, cancel=cancel, on_cell=lambda row: cancel.set())
    assert first.status == "KILLED" and len(first.rows) < 2 * N
    data = json.loads(copy.read_text())
    data["data"][0]["paragraphs"][0]["context"] += " An added sentence."
    copy.write_text(json.dumps(data))
    again = run_sweep(spec, progress=False)
    assert again.sweep_id != first.sweep_id and again.status == "FINISHED" and len(again.rows) == 2 * N
    assert again.data_info["data.corpus.digest"] != first.data_info["data.corpus.digest"]


def test_resume_finds_the_parent_run_even_if_its_id_never_reached_the_record(tmp_path, endpoint):
    """A kill while the parent run was being created leaves a run in MLflow but no id in the record."""
    spec = remote_spec(tmp_path, endpoint.base_url)
    first = run_sweep(spec, progress=False)
    record = Path(spec["home"]) / "sweeps" / first.sweep_id
    status = json.loads((record / "status.json").read_text())
    status.pop("parent_run_id")
    status["status"] = "KILLED"
    (record / "status.json").write_text(json.dumps(status))
    lines = (record / "cells.jsonl").read_text().splitlines()
    (record / "cells.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    endpoint.reset_stats()
    again = run_sweep(spec, progress=False)
    assert again.sweep_id == first.sweep_id and again.parent_run_id == first.parent_run_id
    assert endpoint.stats()["chat_calls"] == 0  # the dropped cells' answers come from the cache
    parents = [r for r in _sweep_runs(spec) if r.data.tags["workbench.kind"] == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
