"""The LLM judge under a budget: its calls count against max_calls like generation calls, a cap stops the sweep
mid-judging, and a larger budget resumes it without judging a judged cell again (and counting what the
stopped run spent). Real HTTP: the fake latency endpoint answers the model and, schema-valid, the judge."""

from __future__ import annotations

import pytest

from memory_tracker import MemoryTracker
from test_budget import N, endpoint, parent_of, priced_spec  # noqa: F401  (endpoint: the module's fixture)
from workbench.errors import ConfigError
from workbench.runner.sweep import run_sweep

METRICS = ["context_recall", "faithfulness"]  # no embedder needed; faithfulness asks twice per cell
TOTAL = 2 * N + 2 * N * 3  # the answers, then 3 judge calls per answer (the fake's statements: one each)


def judged_spec(tmp_path, base_url: str, **budget) -> dict:
    spec = priced_spec(tmp_path, base_url, **budget)
    spec["judge"] = {"provider": "openai", "model": "latency-endpoint", "base_url": base_url, "metrics": METRICS,
                     "max_tokens": 64}
    return spec


def judged(row: dict) -> bool:
    return all(row.get(m) is not None or row.get(f"{m}_error") for m in METRICS)


def test_judge_calls_count_against_max_calls_and_a_resume_judges_only_the_rest(tmp_path, endpoint):  # noqa: F811
    cap = 2 * N + 3 * N + 1  # every answer, and about half the judging (one cell stopped part-way)
    tracker = MemoryTracker()
    endpoint.reset_stats()
    stopped = run_sweep(judged_spec(tmp_path / "s", endpoint.base_url, max_calls=cap), progress=False, tracker=tracker)
    assert endpoint.stats()["chat_calls"] == cap  # the judge never called past the cap
    assert stopped.stats["stopped_by"] == "budget" and any("max_calls" in n for n in stopped.notes)
    assert parent_of(tracker, stopped.sweep_id)["metrics"]["budget.calls"] == cap

    endpoint.reset_stats()
    resumed = run_sweep(judged_spec(tmp_path / "s", endpoint.base_url, max_calls=10_000), progress=False,
                        tracker=tracker)
    assert resumed.sweep_id == stopped.sweep_id and resumed.status == "FINISHED"
    assert all(judged(r) for r in resumed.rows) and len(resumed.rows) == 2 * N
    # No answer and no judged metric asked again. The one call past half the judging is context_recall's
    # (then kept) or the first of faithfulness' two requests, whichever metric started first: a metric cut
    # between its requests is asked again whole (ragas keeps no half-judged state), so 0 or 1 repeated call.
    repeated = endpoint.stats()["chat_calls"] - (TOTAL - cap)
    assert repeated in (0, 1)
    # the resumed guard counted what the stopped run spent on answers and on judging
    assert parent_of(tracker, resumed.sweep_id)["metrics"]["budget.calls"] == TOTAL + repeated
    assert sum(r.get("judge_calls", 0) for r in resumed.rows) in (TOTAL - 2 * N, TOTAL - 2 * N + repeated)


def test_max_usd_needs_a_price_for_the_judge_too(tmp_path):
    spec = judged_spec(tmp_path, "http://127.0.0.1:9/v1", max_usd=1)
    with pytest.raises(ConfigError) as info:
        run_sweep(spec, progress=False)
    assert "judge model 'latency-endpoint'" in str(info.value) and "max_calls" in str(info.value)
