"""Endpoint faults over real HTTP, and the local model server dying mid-sweep."""

import os
import signal
import threading
import time

import mlflow
import pytest

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.testing.fake_local import FakeLocalServer
from workbench.runner.sweep import run_sweep

pytestmark = pytest.mark.slow  # real sweeps, one of them on the local model server

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
    spec["execution"] = {"max_retries": 0}  # the refused call revives the server at once, not after ~6 s of backoff
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


def test_local_server_dying_twice_is_reported(tmp_path, monkeypatch):
    # The sweep's supervision, not llama.cpp, is under test (the real server's restart is the test above):
    # a FakeLocalServer speaks the real protocol over a real socket and restarts without a model load. It is
    # killed by request count (the real server's slowness made "at the first cells" work; the fake is too fast).
    monkeypatch.setattr("workbench.rag.local_model.LocalModelServer", FakeLocalServer.factory(latency=0.05))
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 4
    # one request at a time, as the real server serves them; a refused connection fails at once (the
    # restart is what is tested, not 4 retries' backoff, ~6 s per dead cell)
    spec["execution"] = {"concurrency": 1, "max_retries": 0}
    box = {}

    def kill_twice(server):
        server.kill_after(2).join()  # the endpoint check, then the first answer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # restarted and answering again
            try:
                if server.restarts == 1 and server.stats() is not None:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        server.kill_after(1).join()  # the restarted server: at its first request

    def on_start(info):
        box["watcher"] = threading.Thread(target=kill_twice, args=(info["local_server"],), daemon=True)
        box["watcher"].start()

    results = run_sweep(spec, progress=False, on_start=on_start)
    q = results.questions()
    assert box["watcher"].is_alive() is False and FakeLocalServer.started[-1].restarts == 1
    assert len(q) == 4
    failed = q[q["error"].notna()]
    assert len(failed) >= 1
    assert failed["error"].str.contains("died again after a restart").all()
    assert failed["f1"].isna().all()
