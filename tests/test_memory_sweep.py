"""A real sweep (fake OpenAI endpoint, BM25, no local model) logging through the Tracker protocol to an
in-memory tracker: no MLflow anywhere. What the runner asks of a tracker, shown by its answers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import small_spec
from memory_tracker import MemoryTracker
from test_tracker import answer_type, conforms
from workbench.analysis.load import load_sweep
from workbench.runner.sweep import run_sweep
from workbench.testing.fake_endpoint import LatencyEndpoint

N = 4
TRACED = 2


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.05) as ep:
        yield ep


def spec_for(tmp_path: Path, base_url: str) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}], prompt=[
        {"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 8}]
    spec["execution"] = {"concurrency": 1}
    spec["tracking"]["max_traces_per_variant"] = TRACED
    return spec


def sweep_runs(tracker: MemoryTracker, sweep_id: str, kind: str) -> dict[str, dict]:
    return {i: r for i, r in tracker.runs.items() if r["sweep_id"] == sweep_id and r["kind"] == kind}


def test_a_sweep_logs_runs_tables_and_traces_through_the_protocol(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url)
    tracker = MemoryTracker()
    results = run_sweep(spec, progress=False, tracker=tracker)

    assert results.status == "FINISHED" and len(results.rows) == 2 * N
    assert not Path(spec["tracking"]["tracking_uri"].removeprefix("sqlite:///")).exists()  # the spec's store untouched
    ops = [op for op, _ in tracker.calls]
    assert ops[0] == "start_sweep" and ops[-1] == "finish_sweep"
    assert (ops.count("start_variant"), ops.count("log_cell"), ops.count("finish_variant")) == (2, 2 * TRACED, 2)
    for op, answer in tracker.calls:
        assert conforms(answer, answer_type(op)), (op, answer)
    (parent_id, parent), = sweep_runs(tracker, results.sweep_id, "sweep").items()
    assert parent_id == results.parent_run_id and parent["status"] == "FINISHED"
    metrics = parent["metrics"]
    assert (metrics["wall_s"], metrics["variants_done"]) == (results.wall_s, 2.0)
    assert metrics["estimate.calls"] == metrics["actual.calls"] == 2 * N  # the estimate beside the actual
    assert set(metrics) - {"wall_s", "variants_done"} <= {m for m in metrics if m.startswith(("estimate.", "actual."))}
    assert parent["data_info"] == results.data_info
    for variant in results.variants:
        run = tracker.runs[results.run_ids[variant.hash]]
        assert run["status"] == "FINISHED" and run["parent"] == parent_id and run["variant"] == variant
        assert run["metrics"]["questions"] == N and len(run["rows"]) == N and len(run["traces"]) == TRACED

    loaded = load_sweep(results.sweep_id, tracker=tracker)  # read back through the protocol too
    assert loaded.run_ids == results.run_ids and loaded.parent_run_id == results.parent_run_id
    key = lambda r: (r["variant_hash"], r["question_id"])  # noqa: E731
    assert sorted((key(r), r["answer"]) for r in loaded.rows) == sorted((key(r), r["answer"]) for r in results.rows)

    # an identical re-run asks whether the logged runs are intact, and logs nothing
    tracker.calls.clear()
    again = run_sweep(spec, progress=False, tracker=tracker)
    assert again.sweep_id == results.sweep_id and [op for op, _ in tracker.calls] == ["runs_intact"]
    # one of them deleted from the store: a new sweep, every answer from the cache
    del tracker.runs[results.run_ids[results.variants[0].hash]]
    calls = endpoint.stats()["chat_calls"]
    new = run_sweep(spec, progress=False, tracker=tracker)
    assert new.sweep_id != results.sweep_id and set(new.run_ids.values()) <= set(tracker.runs)
    assert endpoint.stats()["chat_calls"] == calls


def test_a_cancelled_sweep_resumes_into_its_parent_run_and_relogs_a_partial_variant_whole(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url)
    tracker = MemoryTracker()
    cancel = threading.Event()
    first = run_sweep(spec, progress=False, tracker=tracker, cancel=cancel, on_cell=lambda row: cancel.set())
    assert first.status == "KILLED" and len(first.rows) < 2 * N
    partial = sweep_runs(tracker, first.sweep_id, "variant")
    assert {r["status"] for r in partial.values()} == {"KILLED"}

    tracker.calls.clear()
    again = run_sweep(spec, progress=False, tracker=tracker)
    assert again.sweep_id == first.sweep_id and again.parent_run_id == first.parent_run_id
    assert again.status == "FINISHED" and len(again.rows) == 2 * N
    assert [op for op, _ in tracker.calls].count("discard_run") == len(partial)
    children = sweep_runs(tracker, first.sweep_id, "variant")
    assert not set(partial) & set(children)  # the partial runs are gone, each variant logged once, whole
    assert sorted(r["variant"].hash for r in children.values()) == sorted(v.hash for v in again.variants)
    assert all(r["status"] == "FINISHED" and len(r["rows"]) == N for r in children.values())
    assert tracker.runs[first.parent_run_id]["status"] == "FINISHED"
