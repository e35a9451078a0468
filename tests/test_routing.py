"""Routers, cascades and response caches as variants (issue 16), against planted fake endpoints: a small
model right on 50 % of the questions and a large one right on 90 %, at 20x the price, over real HTTP.

One real sweep (BM25, in-memory tracker, no local model) serves the tests below; the hand-counted numbers
come from the plan itself (`RoutingPlan.right`, the known log-probs), never from the code under test."""

from __future__ import annotations

import pytest

from conftest import SQUAD, small_spec
from memory_tracker import MemoryTracker
from workbench.data.evalset import load_eval
from workbench.errors import ConfigError
from workbench.rag import signals
from workbench.runner.sweep import run_sweep
from workbench.spec import EvalSource, load_spec
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.testing.fake_routing import ModelProfile, RoutingPlan

N = 12
SMALL = {"provider": "openai", "model": "small", "max_tokens": 16, "price_input_per_mtok": 0.15,
         "price_output_per_mtok": 0.6}
LARGE = {"provider": "openai", "model": "large", "max_tokens": 16, "price_input_per_mtok": 3.0,
         "price_output_per_mtok": 12.0}
THRESHOLDS = [-0.9, -100.0]  # the second never escalates: the cascade is the small model alone


def eval_items():
    return load_eval(EvalSource(format="squad", path=str(SQUAD), limit=N)).items


@pytest.fixture(scope="module")
def plan():
    items = eval_items()
    return RoutingPlan(answers={i.question: i.reference_answers[0] for i in items}, models={
        "small": ModelProfile(accuracy=0.5, latency=0.005, dont_know=0.5),
        "large": ModelProfile(accuracy=0.9, latency=0.02)})


@pytest.fixture(scope="module")
def endpoint(plan):
    with LatencyEndpoint(latency=0.005, routing=plan) as ep:
        yield ep


def routing_spec(tmp_path, base_url: str, *entries) -> dict:
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = N
    spec["models"] = {"small": {**SMALL, "base_url": base_url}, "large": {**LARGE, "base_url": base_url}}
    spec["space"]["model"] = [{**SMALL, "base_url": base_url}, {**LARGE, "base_url": base_url}, *entries]
    return spec


@pytest.fixture(scope="module")
def routed(tmp_path_factory, endpoint):
    """One sweep for the module (named apart from conftest's `swept`, which means the local model: slow)."""
    tmp = tmp_path_factory.mktemp("routing")
    spec = routing_spec(tmp, endpoint.base_url,
                        {"cascade": {"first": "small", "then": "large",
                                     "escalate_when": {"signal": "answer_logprob_mean", "below": THRESHOLDS}}},
                        {"cascade": {"first": "small", "then": "large", "escalate_when": {"signal": "dont_know"}}},
                        {"router": {"signal": "question_tokens", "threshold": [0, 1000], "below": "small",
                                    "above": "large"}},
                        {"use": "small", "cache": {"kind": "exact"}},
                        {"use": "small", "cache": {"kind": "semantic", "threshold": 0.6, "repeats": 0}})
    endpoint.reset_stats()
    results = run_sweep(spec, progress=False, tracker=MemoryTracker())
    return spec, results, endpoint.stats()


def variant_of(results, label_part: str):
    """The variant whose label holds `label_part` ("· small": the plain small model, not its cached entries)."""
    found = [v for v in results.variants if label_part in v.label()]
    (variant,) = [v for v in found if v.label().endswith(label_part)] if len(found) > 1 else found
    return variant


def rows_of(results, label_part: str) -> list[dict]:
    variant = variant_of(results, label_part)
    return [r for r in results.rows if r["variant_hash"] == variant.hash]


_FRAMES: dict[int, object] = {}


def metrics_of(results, label_part: str) -> dict:
    if id(results) not in _FRAMES:  # aggregating (bootstrap CIs) once per sweep
        _FRAMES[id(results)] = results.to_frame()
    frame = _FRAMES[id(results)]
    return frame.loc[variant_of(results, label_part).short_hash].to_dict()


def test_a_threshold_list_expands_into_one_variant_per_threshold(routed):
    spec, results, _ = routed
    labels = [v.label() for v in load_spec(spec).variants()]
    assert len(labels) == 2 + 2 + 1 + 2 + 2
    assert sum("cascade(small→large if answer_logprob_mean" in label for label in labels) == 2


def test_a_router_sending_everything_to_one_side_equals_that_plain_model(routed):
    _, results, _ = routed
    for threshold, side in (("<0:", "large"), ("<1000:", "small")):
        routed = {r["question_id"]: r for r in rows_of(results, f"router(question_tokens{threshold}")}
        plain = {r["question_id"]: r for r in rows_of(results, f"· {side}")}
        assert {q: r["answer"] for q, r in routed.items()} == {q: r["answer"] for q, r in plain.items()}
        assert {q: r["cost_usd"] for q, r in routed.items()} == pytest.approx({q: r["cost_usd"] for q, r in plain.items()})
        assert all(r["routed_to"] == side for r in routed.values())
        assert metrics_of(results, f"router(question_tokens{threshold}")[f"routed_share.{side}"] == 1.0
        assert metrics_of(results, f"router(question_tokens{threshold}")["f1"] == pytest.approx(
            metrics_of(results, f"· {side}")["f1"])


def test_cascade_escalations_and_cost_match_a_hand_count(routed, plan):
    _, results, _ = routed
    small = {r["question_id"]: r for r in rows_of(results, "· small")}
    large = {r["question_id"]: r for r in rows_of(results, "· large")}
    items = {i.id: i for i in eval_items()}
    for r in rows_of(results, "answer_logprob_mean<-0.9"):
        q = items[r["question_id"]].question
        # the planted log-probs: the served answer's own mean decides, computed here from the reply the plan makes
        reply = plan.reply("small", r["messages"])
        expected = sum(reply.logprobs) / len(reply.logprobs) < -0.9
        assert r["escalated"] is expected, q
        assert r["route_signal"] == pytest.approx(sum(reply.logprobs) / len(reply.logprobs))
        assert [c["model"] for c in r["route_calls"]] == (["small", "large"] if expected else ["small"])
        paid = small[r["question_id"]]["cost_usd"] + (large[r["question_id"]]["cost_usd"] if expected else 0.0)
        assert r["cost_usd"] == pytest.approx(paid)  # a cascade pays for both calls when it escalates
        assert r["answer"] == (large if expected else small)[r["question_id"]]["answer"]
    rows = rows_of(results, "answer_logprob_mean<-0.9")
    m = metrics_of(results, "answer_logprob_mean<-0.9")
    assert m["escalation_rate"] == pytest.approx(sum(r["escalated"] for r in rows) / N)
    assert 0 < m["escalation_rate"] < 1
    assert m["cost_usd_per_1k"] == pytest.approx(1000 * sum(r["cost_usd"] for r in rows) / N)
    assert m["cost_usd_per_1k_ci_low"] <= m["cost_usd_per_1k"] <= m["cost_usd_per_1k_ci_high"]
    assert m["routed_share.large"] == pytest.approx(m["escalation_rate"])


def test_a_cascade_that_does_not_escalate_never_pays_for_the_large_model(routed):
    _, results, _ = routed
    small = {r["question_id"]: r for r in rows_of(results, "· small")}
    never = rows_of(results, "answer_logprob_mean<-100")
    assert len(never) == N and not any(r["escalated"] for r in never)
    for r in never:
        assert [c["model"] for c in r["route_calls"]] == ["small"]
        assert r["cost_usd"] == pytest.approx(small[r["question_id"]]["cost_usd"])
        assert r["answer"] == small[r["question_id"]]["answer"]
    for r in rows_of(results, "dont_know"):  # escalates exactly the answers that say they do not know
        assert r["escalated"] is signals.dont_know(small[r["question_id"]]["answer"])
        assert ("large" in [c["model"] for c in r["route_calls"]]) is r["escalated"]


def test_cascade_latency_adds_both_calls(routed):
    _, results, _ = routed
    for r in rows_of(results, "answer_logprob_mean<-0.9"):
        calls = sum(c["latency_s"] for c in r["route_calls"])
        assert r["latency_generate_s"] == pytest.approx(calls)
        if r["escalated"]:
            assert r["latency_generate_s"] >= 0.02 + 0.005  # the planted latencies of both models
    m = metrics_of(results, "answer_logprob_mean<-0.9")
    assert m["latency_total_p95_s"] >= m["latency_total_p50_s"] > 0


def test_routing_aggregates_flow_into_best_and_pareto(routed):
    _, results, _ = routed
    assert "escalation_rate" in results.to_frame().columns
    best = results.best("cost_usd_per_1k", constraints={"f1": ">= 0"})
    assert "small" in results.variant(best.winner).label() or "-100" in results.variant(best.winner).label()
    front = results.pareto(quality="f1", cost="cost_usd_per_1k", latency=None)
    assert len(front) >= 1
    from workbench.analysis.plots.pareto import pareto_info, plot_pareto

    info = pareto_info(results.to_frame(), "f1", x="cost_usd_per_1k")
    assert len(info.points) == len(results.variants) and info.points["on_front"].any()
    assert any("cascade(" in str(name) for trace in plot_pareto(results.to_frame(), x="cost_usd_per_1k").data
               for name in (trace.text if trace.text is not None else ()))
    from workbench.scoring.aggregate import direction

    assert (direction("escalation_rate"), direction("cost_usd_per_1k_ci_high"), direction("cache_hit_rate")) == ("min", "min", "max")


def test_a_judge_signal_without_a_judge_is_one_clear_error(tmp_path):
    spec = routing_spec(tmp_path, "http://127.0.0.1:9/v1", {"cascade": {
        "first": "small", "then": "large", "escalate_when": {"signal": "judge_faithfulness", "below": 0.5}}})
    with pytest.raises(ConfigError, match=r"space.model\[2\].cascade.escalate_when: the signal judge_faithfulness needs a judge"):
        load_spec(spec)
    spec["judge"] = {"provider": "local", "metrics": ["answer_relevancy"]}
    with pytest.raises(ConfigError, match="with faithfulness in its metrics"):
        load_spec(spec)
    spec["judge"]["metrics"] = ["faithfulness"]
    assert load_spec(spec).variants()[-1].model.cascade.escalate_when.signal == "judge_faithfulness"


def test_unknown_model_names_and_thresholds_are_named(tmp_path):
    spec = routing_spec(tmp_path, "http://127.0.0.1:9/v1", {"router": {
        "signal": "question_tokens", "threshold": 10, "below": "smal", "above": "large"}})
    with pytest.raises(ConfigError, match="no model named 'smal'"):
        load_spec(spec)
    spec["space"]["model"][-1] = {"cascade": {"first": "small", "then": "large",
                                              "escalate_when": {"signal": "dont_know", "below": 0.5}}}
    with pytest.raises(ConfigError, match="dont_know"):
        load_spec(spec)


def test_an_exported_cascade_reproduces_answers_and_routing_decisions(routed, tmp_path):
    from workbench.handover.export import load_pipeline

    spec, results, _ = routed
    variant = variant_of(results, "answer_logprob_mean<-0.9")
    path = results.export(variant.hash, tmp_path / "cascade.yaml", log_to_mlflow=False)
    assert "escalate_when" in path.read_text() and "price_input_per_mtok: 3.0" in path.read_text()
    rows = rows_of(results, "answer_logprob_mean<-0.9")
    with load_pipeline(path, home=spec["home"]) as pipe:
        for r in rows:
            got = pipe.answer(r["question"])
            assert (got.answer, got.answered_by, got.routing["escalated"]) == (r["answer"], r["routed_to"], r["escalated"])
            assert got.routing["signal"] == pytest.approx(r["route_signal"])
            assert got.cost_usd == pytest.approx(r["cost_usd"])
            assert [c["model"] for c in got.routing["calls"]] == [c["model"] for c in r["route_calls"]]


def test_an_exact_cache_serves_every_repeat_and_no_paraphrase(routed):
    _, results, _ = routed
    rows = rows_of(results, "small+exactcache")  # in stream order
    assert len(rows) == 3 * N  # the eval set, a repeat and a paraphrase of each
    first: dict[str, dict] = {}
    for r in rows:  # hand count: a hit exactly when the same words were asked before (the eval set has a twin)
        key = r["question"].lower().rstrip("?")
        if key in first:  # served from the cache, free, with what the miss cost saved
            assert (r["cache_hit"], r["routed_to"], r["cost_usd"], r["route_calls"][0]["cache"]) == ("exact", "cache", 0.0, "exact")
            assert r["answer"] == first[key]["answer"] and r["cache_wrong_hit"] is False
            assert r["cache_saved_usd"] == pytest.approx(first[key]["cost_usd"]) and first[key]["cost_usd"] > 0
        else:
            assert r["cache_hit"] is None and r["routed_to"] == "small" and "~r" not in r["question_id"]
            first[key] = r
    hits = 3 * N - len(first)
    assert hits >= N  # every repeat at least
    m = metrics_of(results, "small+exactcache")
    assert m["cache_hit_rate"] == pytest.approx(hits / (3 * N)) and m["cache_wrong_hit_rate"] == 0.0
    saved = sum(r["cache_saved_usd"] for r in rows if r["cache_hit"])
    assert m["cache_saved_usd_per_1k"] == pytest.approx(1000 * saved / (3 * N))
    assert m["routed_share.cache"] == pytest.approx(hits / (3 * N))


def test_semantic_cache_wrong_hits_are_counted_and_scored_against_quality(routed):
    _, results, _ = routed
    rows = rows_of(results, "small+semanticcache@0.6")
    by_id = {r["question_id"]: r for r in rows}
    hits = [r for r in rows if r["cache_hit"]]
    wrong = [r for r in hits if r["cache_wrong_hit"]]
    assert hits and wrong, "a low threshold (0.6) on one article must confuse some questions"
    for r in hits:  # hand count: the source question's references share none with this one's
        source = by_id[r["route_calls"][0]["question_id"]]
        disjoint = not {a.lower() for a in source["reference_answers"]} & {a.lower() for a in r["reference_answers"]}
        assert r["cache_wrong_hit"] is disjoint
        assert r["answer"] == source["answer"] and r["route_signal"] >= 0.6
    m = metrics_of(results, "small+semanticcache@0.6")
    assert m["cache_wrong_hit_rate"] == pytest.approx(len(wrong) / len(hits))
    assert m["cache_hit_rate"] == pytest.approx(len(hits) / len(rows))
    ok = [r for r in rows if r.get("f1") is not None]
    assert m["f1"] == pytest.approx(sum(r["f1"] for r in ok) / len(ok))  # wrong hits are in the mean
    assert sum(r["f1"] for r in wrong) / len(wrong) < 0.5


@pytest.mark.slow
def test_the_local_llama_cpp_server_sends_token_logprobs_when_asked(local_server):
    from workbench.rag.chat import ChatModel
    from workbench.spec import ModelConfig

    messages = [{"role": "user", "content": "Context: The Denver Broncos won Super Bowl 50.\nQuestion: Who won?\nAnswer:"}]
    plain = ChatModel(ModelConfig(max_tokens=4), base_url=local_server.base_url).generate(messages)
    asked = ChatModel(ModelConfig(max_tokens=4), base_url=local_server.base_url, logprobs=True).generate(messages)
    assert plain.logprobs is None  # not asked, not sent
    assert asked.logprobs and len(asked.logprobs) == asked.completion_tokens
    assert all(v <= 0 for v in asked.logprobs) and signals.answer_logprob_mean(asked.logprobs) < 0
    assert asked.text == plain.text  # asking for log-probs does not change the answer


def test_the_variants_tab_keeps_routed_entries(tmp_path):
    from workbench.ui.variants_tab import VariantsTab

    spec = load_spec(routing_spec(tmp_path, "http://127.0.0.1:9/v1", {"cascade": {
        "first": "small", "then": "large", "escalate_when": {"signal": "dont_know"}}}, {"router": {
            "signal": "question_tokens", "threshold": [16, 24], "below": "small", "above": "large"}}))
    tab = VariantsTab(spec.space)
    routed = [row for row in tab.models.rows if row.routed]
    assert [row.box.description for row in routed] == ["routed: cascade(small→large if dont_know)",
                                                       "routed: router(question_tokens<[16,24]: small|large)"]
    assert [row.config() for row in routed] == spec.space.model[2:]


def _hits(*pairs):
    from workbench.rag.chunking import Chunk
    from workbench.rag.retrieval import Hit

    return [Hit(Chunk(f"{doc}#{i}", doc, f"text {i}", 0, 6), score, i + 1) for i, (doc, score) in enumerate(pairs)]


def test_signals_before_answering_on_hand_made_hits():
    from workbench.rag.routing import decide_route
    from workbench.spec_routing import RoutedModel

    hits = _hits(("d1", 0.9), ("d1", 0.6), ("d2", 0.5), ("d1", 0.1))
    assert signals.question_tokens("Who won Super Bowl 50?") == 6.0  # 5 words and a question mark
    assert signals.retrieval_top_score(hits) == 0.9
    assert signals.retrieval_margin(hits) == pytest.approx(0.3)
    assert signals.top_hit_agreement(hits) == 0.75
    assert (signals.retrieval_margin(hits[:1]), signals.top_hit_agreement([]), signals.retrieval_top_score([])) == (
        0.0, 0.0, float("-inf"))
    models = {"small": SMALL, "large": LARGE}
    for signal, threshold, expected in (("retrieval_top_score", 0.95, "small"), ("retrieval_top_score", 0.9, "large"),
                                        ("retrieval_margin", 0.5, "small"), ("top_hit_agreement", 0.75, "large")):
        cfg = RoutedModel(router={"signal": signal, "threshold": threshold, "below": "small", "above": "large"},
                          models=models)
        assert decide_route(cfg, "q", hits)[0] == expected, (signal, threshold)


def test_signals_after_answering():
    assert signals.answer_logprob_mean([-0.5, -1.5]) == -1.0 and signals.answer_logprob_mean(None) is None
    assert all(signals.dont_know(a) for a in ("", "  ", "I don't know.", "I do not know", "It is not mentioned."))
    assert not any(signals.dont_know(a) for a in ("Denver Broncos", "Santa Clara, California"))
    assert signals.sample_agreement("The Denver Broncos", "Denver Broncos!") == 1.0
    assert signals.sample_agreement("Denver Broncos", "Carolina Panthers") == 0.0
    assert signals.sample_agreement("Denver Broncos won", "Denver") == pytest.approx(0.5)


def _routed_chat(base_url: str, escalate_when: dict, judge=None):
    from workbench.rag.assemble import chat_model
    from workbench.rag.routing import RoutedChat
    from workbench.spec_routing import RoutedModel

    cfg = RoutedModel(cascade={"first": "small", "then": "large", "escalate_when": escalate_when},
                      models={"small": {**SMALL, "base_url": base_url}, "large": {**LARGE, "base_url": base_url}})
    return RoutedChat.open(cfg, lambda c, logprobs=False: chat_model(c, None, logprobs=logprobs), judge)


def test_two_sample_agreement_escalates_when_the_seeded_second_sample_disagrees(endpoint, plan):
    import asyncio

    from workbench.rag.routing import direct_call

    chat = _routed_chat(endpoint.base_url, {"signal": "sample_agreement", "below": 0.5})

    async def run():
        try:
            return [await chat.answer(i.question, [], [{"role": "user", "content": f"Question: {i.question}\nAnswer:"}],
                                      direct_call) for i in eval_items()]
        finally:
            await chat.aclose()

    escalated = []
    for item, routed in zip(eval_items(), asyncio.run(run())):
        messages = [{"role": "user", "content": f"Question: {item.question}\nAnswer:"}]
        first, second = plan.reply("small", messages).text, plan.reply("small", messages, 0.7, 1).text
        expected = signals.sample_agreement(first, second) < 0.5  # hand count from the plan
        assert routed.escalated is expected and routed.signal == pytest.approx(signals.sample_agreement(first, second))
        assert [(c.model, c.purpose) for c in routed.calls] == [("small", "answer"), ("small", "second_sample")] + (
            [("large", "answer")] if expected else [])
        escalated.append(expected)
    assert any(escalated) and not all(escalated)


def test_a_judge_score_under_the_threshold_escalates(endpoint, plan):
    import asyncio

    from workbench.rag.routing import direct_call

    asked = []

    async def judge(question, answer, contexts):  # a judge that trusts answers found in the contexts
        asked.append((question, answer, tuple(contexts)))
        return 1.0 if answer and any(answer in c for c in contexts) else 0.0

    chat = _routed_chat(endpoint.base_url, {"signal": "judge_faithfulness", "below": 0.5}, judge)
    item = eval_items()[0]
    hits = _hits(("d1", 0.9))
    messages = [{"role": "user", "content": f"Question: {item.question}\nAnswer:"}]

    async def run():
        try:
            return await chat.answer(item.question, hits, messages, direct_call)
        finally:
            await chat.aclose()

    routed = asyncio.run(run())
    assert asked == [(item.question, plan.reply("small", messages).text, ("text 0",))]  # the first answer, judged
    assert routed.signal == 0.0 and routed.escalated and routed.answered_by == "large"


def test_an_exported_cache_serves_a_repeated_question_without_a_model_call(routed, tmp_path, endpoint):
    from workbench.handover.export import load_pipeline

    spec, results, _ = routed
    path = results.export(variant_of(results, "small+exactcache").hash, tmp_path / "cached.yaml", log_to_mlflow=False)
    question = eval_items()[0].question
    with load_pipeline(path, home=spec["home"]) as pipe:
        calls = endpoint.stats()["chat_calls"]
        first, again = pipe.answer(question), pipe.answer(question.lower())
        assert endpoint.stats()["chat_calls"] - calls == 1  # the repeat never reached the model
    assert (first.answered_by, again.answered_by, again.routing["cache_hit"]) == ("small", "cache", "exact")
    assert again.answer == first.answer and again.cost_usd == 0.0 and first.cost_usd > 0


class InProcessServeLog:
    """`ServeWriter`'s interface over the real `ServeLog` (MLflow, sqlite) run on a thread of this process:
    the helper process is the only part left out (it would cost seconds to spawn)."""

    def __init__(self, uri: str, deployment: str):
        import queue
        import threading

        from workbench.tracking.serve_log import ServeLog

        self.inbox: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=ServeLog(uri, deployment, {}).run, args=(self.inbox,), daemon=True)
        self.thread.start()

    def log_request(self, req) -> None:
        self.inbox.put(("request", req))

    def pending(self) -> int:
        return self.inbox.qsize()

    def close(self) -> None:
        self.inbox.put(("stop", None))
        self.thread.join(timeout=60)


def test_serving_an_exported_cascade_says_which_model_answered_in_the_reply_and_the_trace(routed, tmp_path):
    from fastapi.testclient import TestClient

    from workbench.handover.export import load_pipeline
    from workbench.handover.serve.app import create_app
    from workbench.handover.serve.service import Service
    from workbench.spec import ExecutionConfig
    from workbench.tracking.serve_log import read_traces, trace_row

    spec, results, _ = routed
    path = results.export(variant_of(results, "answer_logprob_mean<-0.9").hash, tmp_path / "cascade.yaml",
                          log_to_mlflow=False)
    rows = rows_of(results, "answer_logprob_mean<-0.9")
    assert {r["escalated"] for r in rows} == {True, False}  # both decisions are served below
    uri = f"sqlite:///{tmp_path}/serve.db"
    execution = ExecutionConfig()
    service = Service(load_pipeline(path, home=spec["home"], execution=execution), InProcessServeLog(uri, "routed"),
                      execution=execution)
    served = {}  # answer id -> the sweep's row (the eval set has a question twice: ids, not texts)
    with TestClient(create_app(service)) as client:  # lifespan: the executor starts in the app's loop
        for r in rows:
            reply = client.post("/answer", json={"question": r["question"]})
            assert reply.status_code == 200, reply.text
            got = reply.json()
            assert (got["answer"], got["answered_by"], got["routing"]["escalated"]) == (r["answer"], r["routed_to"], r["escalated"])
            assert [c["model"] for c in got["routing"]["calls"]] == [c["model"] for c in r["route_calls"]]
            assert got["cost_usd"] == pytest.approx(r["cost_usd"])
            served[got["answer_id"]] = r
    traced = [trace_row(t) for t in read_traces(uri, "routed")]  # the service closed: every trace is stored
    assert sorted(t["answer_id"] for t in traced) == sorted(served)
    for trace in traced:
        r = served[trace["answer_id"]]
        assert trace["answered_by"] == r["routed_to"] and trace["cost_usd"] == pytest.approx(r["cost_usd"])
