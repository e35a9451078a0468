"""Repeats in a real sweep (issue 15): N answers per (variant, question) with distinct seeds, each its own
model call and cache entry, resumed and estimated per answer. The fake endpoint (real HTTP) samples like a
model: at temperature > 0 another seed gives another answer (`testing/fake_sampling.py`)."""

from __future__ import annotations

import json

import pytest

from conftest import small_spec
from memory_tracker import MemoryTracker
from workbench.errors import ConfigError
from workbench.runner.estimate import count_calls
from workbench.runner.sweep import run_sweep
from workbench.spec import load_spec
from workbench.testing.fake_endpoint import LatencyEndpoint

N, REPEATS = 4, 3


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.0) as ep:
        yield ep


def spec_for(tmp_path, base_url: str, **repeats) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = N
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": base_url,
                               "max_tokens": 8, "temperature": 0.8}]
    spec["repeats"] = repeats
    return spec


def test_each_repeat_is_its_own_seeded_call_and_cache_entry_and_resumes_per_answer(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url, generation=REPEATS)
    before = endpoint.stats()["chat_calls"]
    results = run_sweep(spec, progress=False, tracker=MemoryTracker())
    rows = results.rows
    assert len(rows) == N * REPEATS and endpoint.stats()["chat_calls"] - before == N * REPEATS
    assert [r["repeat"] for r in rows] == list(range(REPEATS)) * N  # a question's answers side by side
    by_question = {}
    for r in rows:
        by_question.setdefault(r["question_id"], set()).add(r["answer"])
    assert max(len(a) for a in by_question.values()) > 1  # sampled: other seeds, other answers (never one cached answer)
    frame = results.to_frame()
    assert frame["f1_n"].iloc[0] == N and "f1_var_generation" in frame.columns and "f1_var_question" in frame.columns
    assert frame["questions"].iloc[0] == N * REPEATS

    loaded = load_spec(spec)
    assert count_calls(loaded, results.data_info["data.corpus.digest"],
                       [(r["question_id"], r["question"]) for r in rows]) .cached == N * REPEATS
    again = run_sweep(spec, progress=False, tracker=MemoryTracker(), resume=False)  # every answer from its own entry
    assert again.stats["generation_cache_hits"] == N * REPEATS and again.stats["model_calls"] == 0
    assert [r["answer"] for r in again.rows] == [r["answer"] for r in rows]

    # a killed sweep resumes per answer: drop the last two answers from the record, run again
    cells = tmp_path / "home" / "sweeps" / again.sweep_id / "cells.jsonl"
    kept = cells.read_text().splitlines()[:-2]
    cells.write_text("\n".join(kept) + "\n")
    status = cells.parent / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "status": "RUNNING", "pid": 999999999}))
    resumed = run_sweep(spec, progress=False, tracker=MemoryTracker())
    assert len(resumed.rows) == N * REPEATS and sorted((r["question_id"], r["repeat"]) for r in resumed.rows) == \
        sorted((r["question_id"], r["repeat"]) for r in rows)


def test_repeats_that_cannot_mean_anything_are_one_clear_error(tmp_path, endpoint):
    with pytest.raises(ConfigError, match="repeats.judge is 2 but the spec has no judge"):
        run_sweep(spec_for(tmp_path, endpoint.base_url, judge=2), progress=False, tracker=MemoryTracker())
    with pytest.raises(ConfigError, match="repeats.generation"):
        load_spec(spec_for(tmp_path, endpoint.base_url, generation=0))


@pytest.mark.slow  # MLflow store, two CLI runs: the gate and plan end to end
def test_gate_and_plan_from_the_command_line(tmp_path, endpoint):
    import yaml
    from typer.testing import CliRunner

    from workbench.cli import app

    spec = spec_for(tmp_path, endpoint.base_url)
    del spec["repeats"]
    spec["space"]["prompt"] = [{"name": "default"}, {"name": "terse", "template": "Context: {context}\nQ: {question}\nA:"}]
    results = run_sweep(spec, progress=False)
    baseline, candidate = results.variants
    winner = results.export(baseline.hash, tmp_path / "winner.yaml")
    runner = CliRunner()
    uri = spec["tracking"]["tracking_uri"]

    planned = runner.invoke(app, ["plan", "--sweep-id", results.sweep_id, "--delta", "0.1", "--tracking-uri", uri])
    assert planned.exit_code == 0, planned.output
    assert planned.output.startswith("to detect a f1 difference of 0.1 between ")

    for variant in (candidate, baseline):
        one = {**spec, "space": {**spec["space"], "prompt": [variant.prompt.model_dump(mode="json")]},
               "tracking": {**spec["tracking"], "enabled": False}}  # the gate's decision needs no MLflow
        path = tmp_path / f"candidate-{variant.short_hash}.yaml"
        path.write_text(yaml.safe_dump(one))
        calls = endpoint.stats()["chat_calls"]
        gated = runner.invoke(app, ["gate", str(path), "--baseline", str(winner), "--metric", "f1", "--max-drop", "0.02"])
        line = gated.output.strip().splitlines()[-1]
        assert line.startswith(f"gate PASS: candidate {variant.short_hash} f1 ") or line.startswith("gate FAIL:"), gated.output
        assert gated.exit_code == (0 if "gate PASS" in line else 1)
        assert endpoint.stats()["chat_calls"] == calls  # both answered from the cache: same questions, same answers
    assert "(+0, 95% CI +0 to +0)" in line  # the baseline against itself: no drop
    bad = runner.invoke(app, ["gate", str(path), "--baseline", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "missing.yaml" in bad.output and "Traceback" not in bad.output


def test_the_variants_tab_sets_repeats_and_counts_every_answer(tmp_path):
    from test_ui import QUICKSTART, text
    from workbench.ui import Workbench

    wb = Workbench(str(QUICKSTART))
    vt = wb.variants_tab
    wb.data_tab.eval_limit.value = 5
    assert text(vt.count).startswith("4 variants × 5 questions = 20 model calls")
    vt.repeat_answers.value = 3
    assert wb.spec().repeats.generation == 3
    assert text(vt.count).startswith("4 variants × 5 questions × 3 answers = 60 model calls")
    vt.repeat_judge.value = 2
    assert wb.spec().repeats.judge == 2 and "each answer judged 2 times" in text(vt.count)


@pytest.mark.slow  # ragas' judge through real HTTP
def test_judge_passes_are_kept_per_answer_and_each_is_its_own_cache_entry(tmp_path, endpoint):
    spec = spec_for(tmp_path, endpoint.base_url, generation=2, judge=2)
    spec["data"]["eval"]["limit"] = 2
    spec["judge"] = {"provider": "openai", "model": "latency-endpoint", "base_url": endpoint.base_url,
                     "metrics": ["faithfulness"]}
    before = endpoint.stats()["chat_calls"]
    results = run_sweep(spec, progress=False, tracker=MemoryTracker())
    judge_calls = endpoint.stats()["chat_calls"] - before - 4  # 2 questions x 2 answers generated
    assert judge_calls > 0 and judge_calls % 2 == 0  # both passes asked, the same requests twice
    for row in results.rows:
        passes = row["faithfulness_passes"]
        assert len(passes) == 2 and "f1_passes" not in row  # only the judge's metrics have passes
        known = [p for p in passes if p is not None]
        assert row["faithfulness"] == (pytest.approx(sum(known) / len(known)) if known else None)
    frame = results.to_frame()
    assert frame["faithfulness_n"].iloc[0] <= 2  # questions, not answers x passes (8 scores)
    before = endpoint.stats()["chat_calls"]
    run_sweep(spec, progress=False, tracker=MemoryTracker(), resume=False)
    assert endpoint.stats()["chat_calls"] == before  # every answer and every judge pass from its own cache entry
