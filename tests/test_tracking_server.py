"""A sweep logging to a real MLflow tracking server over HTTP, and that server dying mid-sweep.

MLflow runs in the workbench's logging process; a failure there must never lose an answer: the sweep
finishes its cells, says which URI failed and how to finish, and running the same spec again (server
back) finishes the logging without asking the model anything.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint

pytestmark = pytest.mark.slow  # an MLflow tracking server and real sweeps

N = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"

    def start(self) -> "MlflowServer":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root}/server.db", "--artifacts-destination", str(self.root / "art"),
             "--workers", "1"],  # one sweep's logging needs one worker; each of the default 4 imports all of MLflow
            # no job-execution processes (scorer jobs, trace roll-ups): no test here asks for one
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=subprocess.DEVNULL, stderr=(self.root / "server.log").open("ab"), start_new_session=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("mlflow server did not come up")

    def kill(self) -> None:
        os.killpg(self.proc.pid, 9)
        self.proc.wait()


@pytest.fixture()
def endpoint():
    with LatencyEndpoint(latency=0.1) as ep:  # at concurrency 1 the server dies with ~9 of 12 cells (0.9 s) to go
        yield ep


def run_cli(spec_path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "run", str(spec_path), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )


def test_sweep_logs_to_a_real_server_and_survives_it_dying(tmp_path, endpoint):
    server = MlflowServer(tmp_path, free_port()).start()
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}], prompt=[
        {"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url, "max_tokens": 8}]
    spec["execution"] = {"concurrency": 1}
    spec["tracking"] = {"tracking_uri": server.uri}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    # no HTTP retries: a dead server fails the next call at once instead of after minutes of backoff
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

    proc = run_cli(path, env)
    cells = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "home" / "sweeps").glob("*/cells.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            cells = found[0]
            break
        time.sleep(0.05)
    assert cells is not None, proc.communicate()[1][-2000:]
    server.kill()
    out, err = proc.communicate(timeout=240)

    assert proc.returncode == 2, (out, err)
    assert server.uri in err and "run the same spec again" in err and "Traceback" not in err
    rows = [json.loads(line) for line in cells.read_text().splitlines()]
    assert len({(r["variant_hash"], r["question_id"]) for r in rows}) == 2 * N  # every answer kept
    assert json.loads((cells.parent / "status.json").read_text())["status"] == "FAILED"

    server.start()  # same database: the runs logged before the kill are still there
    calls = endpoint.stats()["chat_calls"]
    proc = run_cli(path, env)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert endpoint.stats()["chat_calls"] == calls  # finishing the logging asked the model nothing
    assert cells.parent.name in out  # the same sweep, resumed

    mlflow.set_tracking_uri(server.uri)
    runs = mlflow.search_runs(experiment_names=["t-sweep"], output_format="list")
    parents = [r for r in runs if r.data.tags["workbench.kind"] == "sweep"]
    children = [r for r in runs if r.data.tags["workbench.kind"] == "variant"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.metrics["questions"] for c in children} == {N}
    for child in children:
        table = json.loads(Path(mlflow.MlflowClient().download_artifacts(child.info.run_id, "eval_results.json", str(tmp_path))).read_text())
        assert len(table["data"]) == N
    server.kill()


def test_a_killed_logging_process_loses_no_answer_and_the_same_spec_finishes_the_logging(tmp_path, endpoint):
    import workbench.tracking.process as tp
    from workbench.errors import TrackingError
    from workbench.runner.sweep import run_sweep

    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}], prompt=[
        {"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url, "max_tokens": 8}]
    spec["execution"] = {"concurrency": 1}
    killed = []

    def on_cell(row):
        if len(killed) == 0 and tp._worker is not None:
            os.kill(tp._worker.proc.pid, 9)
            killed.append(row)

    with pytest.raises(TrackingError, match="run the same spec again"):
        run_sweep(spec, progress=False, on_cell=on_cell)
    assert killed
    (record,) = (tmp_path / "home" / "sweeps").iterdir()
    rows = [json.loads(line) for line in (record / "cells.jsonl").read_text().splitlines()]
    assert len({(r["variant_hash"], r["question_id"]) for r in rows}) == 2 * N  # every answer kept
    assert json.loads((record / "status.json").read_text())["status"] == "FAILED"

    endpoint.reset_stats()
    again = run_sweep(spec, progress=False)  # a new logging process is started for it
    assert again.sweep_id == record.name and again.status == "FINISHED"
    assert endpoint.stats()["chat_calls"] == 0
    mlflow.set_tracking_uri(spec["tracking"]["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=["t-sweep"], output_format="list")
    assert [r.info.status for r in runs if r.data.tags["workbench.kind"] == "sweep"] == ["FINISHED"]
    children = [r for r in runs if r.data.tags["workbench.kind"] == "variant"]
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.metrics["questions"] for c in children} == {N}


def test_a_store_that_fails_to_open_in_the_logging_process_loses_no_answer(tmp_path, endpoint):
    """The sqlite file passes the cheap check before the sweep (right header) but is corrupt: opening it
    fails in the logging process, while the answers are being generated."""
    from workbench.errors import TrackingError
    from workbench.runner.sweep import run_sweep

    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 3
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url, "max_tokens": 8}]
    store = Path(spec["tracking"]["tracking_uri"].removeprefix("sqlite:///"))
    store.parent.mkdir(parents=True)
    store.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(TrackingError) as failure:
        run_sweep(spec, progress=False)
    assert str(store) in str(failure.value) and "run the same spec again" in str(failure.value)
    (record,) = (tmp_path / "home" / "sweeps").iterdir()
    assert len((record / "cells.jsonl").read_text().splitlines()) == 3
    store.unlink()  # the user fixes the store
    endpoint.reset_stats()
    again = run_sweep(spec, progress=False)
    assert again.sweep_id == record.name and again.status == "FINISHED" and len(again.run_ids) == 1
    assert endpoint.stats()["chat_calls"] == 0


def test_a_new_sqlite_store_appears_only_complete(tmp_path):
    """A store whose creation was killed halfway is never used: it is built aside and renamed in."""
    from workbench.spec import TrackingConfig
    from workbench.tracking.mlflow_tracker import MlflowTracker

    store = tmp_path / "mlruns" / "mlflow.db"
    store.parent.mkdir()
    (store.parent / "mlflow.db.creating-99999").write_bytes(b"SQLite format 3\x00 half-migrated")  # a killed creator
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{store}", artifact_location=str(tmp_path / "art"))
    tracker = MlflowTracker(cfg, "fresh")
    tracker.open()
    assert tracker.experiment.name == "fresh" and store.exists()
    assert not list(store.parent.glob("mlflow.db.creating-*"))
