"""Endpoint faults over real HTTP, and the local model server dying mid-sweep."""

import os
import signal

import mlflow
import pytest

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.runner.sweep import run_sweep

pytestmark = pytest.mark.slow  # real sweeps, two of them on the local model server

N = 10


def test_sweep_survives_20_percent_faults_and_never_scores_a_failure_as_zero(tmp_path):
    with LatencyEndpoint(latency=0.05, fail_rate=0.2, timeout_sleep=5, retry_after=0.2, seed=7) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}, {"kind": "dense", "k": 2}])
        spec["data"]["eval"]["limit"] = N
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
        spec["execution"] = {"concurrency": 4, "timeout_s": 1.0, "max_retries": 3}
        results = run_sweep(spec, progress=False)
        stats = ep.stats()
    q = results.questions()
    assert len(q) == 2 * N  # every cell is there: answered or failed with its error, none lost
    assert stats["faults_total"] > 0 and set(stats["faults_injected"]) >= {"429", "500"}
    ok, failed = q[q["error"].isna()], q[q["error"].notna()]
    assert ok["answer"].notna().all()
    assert failed["f1"].isna().all() and failed["exact_match"].isna().all()  # failed ≠ 0
    frame = results.to_frame()
    for v, row in frame.iterrows():
        cells = q[q["variant"] == v]
        assert row["failed_cells"] == cells["error"].notna().sum()
        assert row["f1_n"] == cells["f1"].notna().sum()  # the aggregate says how many cells it covers
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    for vhash, run_id in results.run_ids.items():
        logged = client.get_run(run_id)
        assert logged.data.metrics["failed_cells"] == frame.loc[vhash[:12], "failed_cells"]
    print(
        f"\nfault figures: chat requests {stats['chat_calls']}, faults injected {stats['faults_total']} "
        f"{stats['faults_injected']}, model calls ok {results.stats['model_calls']}, attempts by the workbench "
        f"{results.stats['model_attempts']}, failed cells {len(failed)}, lost cells {2 * N - len(q)}"
    )


def test_local_server_killed_mid_sweep_is_restarted_once(tmp_path):
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 4
    box = {}

    def on_start(info):
        box["server"] = info["local_server"]

    def on_cell(row):
        if len(box.setdefault("seen", [])) == 0:
            os.kill(box["server"].pid, signal.SIGKILL)
        box["seen"].append(row)

    results = run_sweep(spec, progress=False, on_start=on_start, on_cell=on_cell)
    q = results.questions()
    assert len(q) == 4 and q["error"].isna().all()
    assert any("restarted it once" in n for n in results.notes)


def test_local_server_dying_twice_is_reported(tmp_path):
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 4
    box = {"kills": 0}

    def on_start(info):
        box["server"] = info["local_server"]

    def on_cell(row):
        if box["kills"] < 2:
            os.kill(box["server"].pid, signal.SIGKILL)
            box["kills"] += 1

    results = run_sweep(spec, progress=False, on_start=on_start, on_cell=on_cell)
    q = results.questions()
    assert len(q) == 4
    failed = q[q["error"].notna()]
    assert len(failed) >= 1
    assert failed["error"].str.contains("died again after a restart").all()
    assert failed["f1"].isna().all()
