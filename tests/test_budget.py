"""Budget caps: the sweep never starts a call past a cap, stops cleanly (cells kept, runs logged, the parent
marked), and a larger budget resumes it with no call asked twice. Real HTTP against the fake endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import small_spec
from memory_tracker import MemoryTracker
from workbench.cli import BUDGET_EXIT, app
from workbench.errors import ConfigError
from workbench.runner.sweep import run_sweep
from workbench.testing.fake_endpoint import LatencyEndpoint

N = 5
PRICE_IN, PRICE_OUT = 2.0, 8.0  # USD per million tokens


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.02) as ep:
        yield ep


def priced_spec(tmp_path: Path, base_url: str, **budget) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}, {"kind": "bm25", "k": 3}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "max_tokens": 8,
                               "price_input_per_mtok": PRICE_IN, "price_output_per_mtok": PRICE_OUT}]
    spec["execution"] = {"concurrency": 2}
    spec["budget"] = budget
    return spec


def parent_of(tracker: MemoryTracker, sweep_id: str) -> dict:
    (parent,) = [r for r in tracker.runs.values() if r["sweep_id"] == sweep_id and r["kind"] == "sweep"]
    return parent


def test_max_calls_stops_cleanly_and_a_larger_budget_resumes_with_no_repeated_call(tmp_path, endpoint):
    tracker = MemoryTracker()
    endpoint.reset_stats()
    stopped = run_sweep(priced_spec(tmp_path, endpoint.base_url, max_calls=3), progress=False, tracker=tracker)
    assert endpoint.stats()["chat_calls"] == 3  # never a call past the cap, even with 2 in flight
    assert stopped.status == "KILLED" and stopped.stats["stopped_by"] == "budget" and len(stopped.rows) == 3
    assert any(n.startswith("stopped by budget: max_calls 3") for n in stopped.notes)
    parent = parent_of(tracker, stopped.sweep_id)
    assert parent["status"] == "KILLED" and parent["tags"]["workbench.stopped_by"] == "budget"
    children = [r for r in tracker.runs.values() if r["sweep_id"] == stopped.sweep_id and r["kind"] == "variant"]
    assert sorted(c["metrics"]["questions"] for c in children) == sorted(
        [float(sum(r["variant_hash"] == h for r in stopped.rows)) for h in {r["variant_hash"] for r in stopped.rows}])
    assert all(c["status"] == "KILLED" for c in children)  # each says it covers fewer than N questions
    assert parent["metrics"]["actual.calls"] == 3 and parent["metrics"]["budget.calls"] == 3

    endpoint.reset_stats()
    resumed = run_sweep(priced_spec(tmp_path, endpoint.base_url, max_calls=100), progress=False, tracker=tracker)
    assert resumed.sweep_id == stopped.sweep_id and resumed.status == "FINISHED" and len(resumed.rows) == 2 * N
    assert endpoint.stats()["chat_calls"] == 2 * N - 3  # nothing already answered was asked again
    parent = parent_of(tracker, resumed.sweep_id)
    assert parent["status"] == "FINISHED" and "workbench.stopped_by" not in parent["tags"]
    # the estimate beside the actual: calls exact (7 new, 3 cached), tokens within their range
    m = parent["metrics"]
    assert m["estimate.calls"] == m["actual.calls"] == 2 * N - 3
    assert m["estimate.prompt_tokens_low"] <= m["actual.prompt_tokens"] <= m["estimate.prompt_tokens_high"]
    assert m["estimate.completion_tokens_high"] == 8 * (2 * N - 3) >= m["actual.completion_tokens"]


def test_max_usd_is_never_passed(tmp_path, endpoint):
    cap = 0.0012  # a few calls' worth at these prices
    endpoint.reset_stats()
    results = run_sweep(priced_spec(tmp_path, endpoint.base_url, max_usd=cap), progress=False, tracker=MemoryTracker())
    stats = endpoint.stats()
    spent = (stats["tokens_prompt"] * PRICE_IN + stats["tokens_completion"] * PRICE_OUT) / 1e6  # the endpoint's usage
    assert results.stats["stopped_by"] == "budget" and 0 < stats["chat_calls"] < 2 * N
    assert spent <= cap
    assert spent == pytest.approx(sum(r["cost_usd"] for r in results.rows))


@pytest.mark.parametrize("budget, field", [({"max_usd": -1}, "budget.max_usd"), ({"max_calls": 0}, "budget.max_calls"),
                                           ({"max_wall_s": "soon"}, "budget.max_wall_s"), ({"max_dollars": 5}, "budget.max_dollars")])
def test_a_bad_budget_is_one_clear_error(tmp_path, budget, field):
    spec = priced_spec(tmp_path, "http://127.0.0.1:9/v1", **budget)
    with pytest.raises(ConfigError) as info:
        run_sweep(spec, progress=False)
    assert field in str(info.value) and "\n" in str(info.value)


def test_cli_budget_flags_are_checked_and_a_price_is_required_for_max_usd(tmp_path):
    spec = priced_spec(tmp_path, "http://127.0.0.1:9/v1")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    bad = CliRunner().invoke(app, ["run", str(path), "--max-calls", "-2"])
    assert bad.exit_code == 2 and "max_calls" in bad.output and "Traceback" not in bad.output
    del spec["space"]["model"][0]["price_input_per_mtok"], spec["space"]["model"][0]["price_output_per_mtok"]
    path.write_text(yaml.safe_dump(spec))
    unpriced = CliRunner().invoke(app, ["run", str(path), "--max-usd", "1"])
    assert unpriced.exit_code == 2 and "price_input_per_mtok" in unpriced.output
    assert not (Path(spec["home"]) / "sweeps").exists()  # refused before anything was written
    assert BUDGET_EXIT not in (0, 1, 2, 130)


def test_max_wall_s_starts_no_call_past_it(tmp_path, endpoint):
    endpoint.reset_stats()
    results = run_sweep(priced_spec(tmp_path, endpoint.base_url, max_wall_s=0.001), progress=False,
                        tracker=MemoryTracker())
    assert results.stats["stopped_by"] == "budget" and endpoint.stats()["chat_calls"] == 0 and not results.rows
    assert any("max_wall_s 0.001" in n for n in results.notes)


def test_cli_exits_with_its_own_code_when_the_budget_stops_the_sweep(tmp_path, endpoint):
    spec = priced_spec(tmp_path, endpoint.base_url)
    spec["tracking"]["enabled"] = False
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    stopped = CliRunner().invoke(app, ["run", str(path), "--no-progress", "--max-calls", "4"])
    assert stopped.exit_code == BUDGET_EXIT, stopped.output
    assert "stopped by budget: max_calls 4" in stopped.output
    finished = CliRunner().invoke(app, ["run", str(path), "--no-progress", "--max-usd", "1"])
    assert finished.exit_code == 0, finished.output


@pytest.mark.slow  # a new MLflow sqlite store in process (~2-3 s): kept out of the fast set's budget
def test_the_mlflow_parent_says_stopped_by_budget_until_a_resumed_run_finishes(tmp_path):
    import mlflow

    from workbench.spec import TrackingConfig, load_spec
    from workbench.tracking.mlflow_tracker import MlflowTracker

    spec = load_spec(small_spec(tmp_path))
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db", artifact_location=str(tmp_path / "art"))
    tracker = MlflowTracker(cfg, "budget")
    parent = tracker.start_sweep(spec, "s1", 2, {}).result().parent_run_id
    tracker.finish_sweep("KILLED", {"estimate.calls": 6.0, "actual.calls": 4.0},
                         {"workbench.stopped_by": "budget", "workbench.stop_reason": "max_calls 4 reached"}).result()
    client = mlflow.MlflowClient(cfg.tracking_uri)
    run = client.get_run(parent)
    assert run.info.status == "KILLED" and run.data.tags["workbench.stopped_by"] == "budget"
    assert (run.data.metrics["estimate.calls"], run.data.metrics["actual.calls"]) == (6.0, 4.0)
    assert tracker.start_sweep(spec, "s1", 2, {}, parent).result().parent_run_id == parent  # resumed
    tracker.finish_sweep("FINISHED", {"actual.calls": 2.0},
                         {"workbench.stopped_by": None, "workbench.stop_reason": None}).result()
    assert tracker.close() is None
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and not {"workbench.stopped_by", "workbench.stop_reason"} & set(run.data.tags)
