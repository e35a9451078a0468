"""A routed sweep's runner paths (issue 16): a cascade whose small model is the local server, which is
SIGKILLed mid-run, with two answers per question (`repeats`).

The local server is `testing.fake_local.FakeLocalServer` (the real protocol over a real socket; a real
llama.cpp server cannot be made to die on cue) and the large model a planted fake endpoint. One sweep,
no local model: both tests are fast."""

from __future__ import annotations

import pytest

from conftest import SQUAD, small_spec
from memory_tracker import MemoryTracker
from workbench.data.evalset import load_eval
from workbench.runner.sweep import run_sweep
from workbench.spec import EvalSource
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.testing.fake_local import FakeLocalServer
from workbench.testing.fake_routing import ModelProfile, RoutingPlan

N = 5
REPEATS = 2
KILL_AT = 3  # the local server is SIGKILLed at its 3rd chat request (the endpoint check, then two answers)


@pytest.fixture(scope="module")
def revived(tmp_path_factory):
    items = load_eval(EvalSource(format="squad", path=str(SQUAD), limit=N)).items
    plan = RoutingPlan(answers={i.question: i.reference_answers[0] for i in items},
                       models={"large": ModelProfile(accuracy=0.9, latency=0.005)})
    tmp = tmp_path_factory.mktemp("routed-sweep")
    with LatencyEndpoint(latency=0.005, routing=plan) as large:
        spec = small_spec(tmp, retrieval=[{"kind": "bm25", "k": 2}])
        spec["data"]["eval"]["limit"] = N
        spec["repeats"] = {"generation": REPEATS}
        spec["execution"] = {"max_retries": 0}  # a refused connection fails at once (the restart is what is tested)
        spec["models"] = {
            "small": {"provider": "local", "temperature": 0.7, "max_tokens": 16},
            "large": {"provider": "openai", "model": "large", "base_url": large.base_url, "temperature": 0.7,
                      "max_tokens": 16, "price_input_per_mtok": 3.0, "price_output_per_mtok": 12.0}}
        # below 0: every mean log-prob is under it, so each question escalates and calls both models
        spec["space"]["model"] = [{"cascade": {"first": "small", "then": "large",
                                               "escalate_when": {"signal": "answer_logprob_mean", "below": 0.0}}}]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("workbench.rag.local_model.LocalModelServer", FakeLocalServer.factory(latency=0.05))
            results = run_sweep(spec, progress=False, tracker=MemoryTracker(),
                                on_start=lambda _: FakeLocalServer.started[-1].kill_after(KILL_AT))
        yield results, FakeLocalServer.started[-1], large.stats()


def test_a_routed_sweep_whose_local_server_dies_restarts_it_and_answers_every_cell(revived):
    results, local, _ = revived
    assert local.restarts == 1 and any("died mid-sweep" in n and "restarted it once" in n for n in results.notes)
    assert len(results.rows) == N * REPEATS  # no lost result
    assert [r["error"] for r in results.rows] == [None] * (N * REPEATS)
    assert all(r["answer"] and r["routed_to"] == "large" and r["escalated"] for r in results.rows)
    assert all([c["model"] for c in r["route_calls"]] == ["small", "large"] for r in results.rows)
    assert results.status == "FINISHED" and results.to_frame()["failed_cells"].iloc[0] == 0


def test_each_repeat_of_a_cascade_asks_both_models_with_its_own_seed(revived):
    results, _, large = revived
    by_question: dict[str, list[dict]] = {}
    for r in results.rows:
        by_question.setdefault(r["question_id"], []).append(r)
    assert all(sorted(r["repeat"] for r in rows) == list(range(REPEATS)) for rows in by_question.values())
    # a repeat asked with repeat 0's seed would be served from the generation cache (or merged in flight)
    assert not any(c["cached"] for r in results.rows for c in r["route_calls"])
    assert results.stats["merged_requests"] == 0
    assert large["chat_calls"] == N * REPEATS  # one call per answer: none served from another repeat's
