"""The ragas judge adapter (workbench.scoring.judge) against the real local SmolLM2 server and a fake endpoint.

SmolLM2-135M judges poorly; these tests check that its judgements parse into [0, 1] through the
JSON-schema response_format, that failures are None with a reason (never 0), and the cache.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from workbench.spec import JudgeConfig
from workbench.errors import ModelError
from workbench.scoring import catalogue
from workbench.scoring.judge import REQUIREMENTS, Judge, JudgeScore, response_format
from workbench.tracking.naming import round_sig

JUDGE_METRICS = tuple(catalogue.names("judged"))

SQUAD = Path(__file__).resolve().parent.parent / "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
MAIN = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
DEAD_URL = "http://127.0.0.1:9/v1"  # discard port: any request to it fails


def _squad_cases() -> list[tuple[str, str, list[str], list[str]]]:
    paragraphs = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]["paragraphs"]
    first, mvp = paragraphs[0], paragraphs[2]
    q1, q2 = first["qas"][0], mvp["qas"][0]
    assert q1["question"] == "Which NFL team represented the AFC at Super Bowl 50?"
    assert q2["question"] == "Who was the Super Bowl 50 MVP?"
    return [
        (q1["question"], "The Denver Broncos represented the AFC.", [first["context"]],
         [a["text"] for a in q1["answers"]]),
        # two retrieved contexts: the right paragraph and a distractor (context_precision judges each)
        (q2["question"], "Von Miller was the Super Bowl 50 MVP.", [mvp["context"], paragraphs[1]["context"]],
         [a["text"] for a in q2["answers"]]),
    ]


CASES = _squad_cases()


def _assert_well_formed(metric: str, score: JudgeScore) -> None:
    assert isinstance(score, JudgeScore)
    if score.value is None:
        assert score.error and score.error.startswith(metric), score
    else:
        assert score.error is None, score
        assert isinstance(score.value, float) and 0.0 <= score.value <= 1.0 and not math.isnan(score.value), score


@pytest.fixture(scope="module")
def local_cfg() -> JudgeConfig:
    # max_tokens 256 bounds a runaway reply (SmolLM2 sometimes repeats until the limit) to seconds.
    return JudgeConfig(metrics=list(JUDGE_METRICS), max_tokens=256)


@pytest.fixture(scope="module")
def squad_run(local_server, local_cfg, tmp_path_factory):
    """Score both SQuAD cases once (every metric on the first, the four main ones on the second)."""
    import tiktoken

    tiktoken_used: list[str] = []
    real = tiktoken.get_encoding, tiktoken.encoding_for_model

    def refuse(name, *args, **kwargs):  # ragas must not need tiktoken (it would download its BPE file)
        tiktoken_used.append(name)
        raise RuntimeError(f"tiktoken {name} used")

    tiktoken.get_encoding = tiktoken.encoding_for_model = refuse
    cache_dir = tmp_path_factory.mktemp("judge_cache")
    judge = Judge(local_cfg, base_url=local_server.base_url, cache_dir=cache_dir)
    main_judge = Judge(local_cfg.model_copy(update={"metrics": list(MAIN)}), base_url=local_server.base_url,
                       cache_dir=cache_dir)
    try:
        first = judge.score(*CASES[0])
        calls_first = judge.calls
        second = main_judge.score(*CASES[1])
    finally:
        tiktoken.get_encoding, tiktoken.encoding_for_model = real
        judge.close()
        main_judge.close()
    print(f"\ncase 1 ({calls_first} calls): {first}\ncase 2 ({main_judge.calls} calls): {second}")
    return {"first": first, "second": second, "calls_first": calls_first, "calls_second": main_judge.calls,
            "cache_dir": cache_dir, "tiktoken_used": tiktoken_used}


# ---------------------------------------------------------------- the real local judge


def test_local_judge_scores_parse_within_0_1(squad_run):
    first, second = squad_run["first"], squad_run["second"]
    assert set(first) == set(JUDGE_METRICS)
    assert set(second) == set(MAIN)
    for scores in (first, second):
        for metric, score in scores.items():
            _assert_well_formed(metric, score)
    parsed_first = [m for m in MAIN if first[m].value is not None]
    parsed_both = parsed_first + [m for m in MAIN if second[m].value is not None]
    assert len(parsed_first) >= 3, first
    assert len(parsed_both) >= 5, (first, second)
    # Requests per question: faithfulness 2, answer_relevancy 1 (temperature 0), context_precision
    # one per context, context_recall 1, factual_correctness up to 4.
    assert 5 <= squad_run["calls_first"] <= 9
    assert squad_run["calls_second"] == 6
    assert squad_run["tiktoken_used"] == []


def test_cache_reuses_scores_without_calls(squad_run, local_cfg):
    cached = {m: s for m, s in squad_run["first"].items() if s.value is not None}
    assert cached, "no metric parsed on the first case"
    # Another judge on the same cache, with a server URL that cannot answer: the local server's port
    # is not part of the key, and a cached score needs no request.
    judge = Judge(local_cfg.model_copy(update={"metrics": list(cached)}), base_url=DEAD_URL,
                  cache_dir=squad_run["cache_dir"])
    try:
        again = judge.score(*CASES[0])
    finally:
        judge.close()
    assert again == cached
    assert judge.calls == 0
    assert judge.cache_hits == len(cached)


def test_missing_reference_needs_no_call(local_cfg):
    judge = Judge(local_cfg, base_url=DEAD_URL)
    question, answer, contexts, _ = CASES[0]
    scores = judge.score(question, answer, contexts, ["", "  "])
    for metric in ("context_precision", "context_recall", "factual_correctness"):
        assert scores[metric] == JudgeScore(None, "needs reference answers")
    assert judge.calls == 2  # faithfulness and answer_relevancy were tried (and failed: dead URL)
    for metric in ("faithfulness", "answer_relevancy"):
        assert scores[metric].value is None and "endpoint failed" in scores[metric].error


def test_requirements():
    judge = Judge(JudgeConfig(metrics=["context_recall", "answer_relevancy"]), base_url=DEAD_URL)
    assert judge.requirements() == {
        "context_recall": frozenset({"question", "contexts", "reference"}),
        "answer_relevancy": frozenset({"question", "answer"}),
    }
    assert set(REQUIREMENTS) == set(JUDGE_METRICS)


def test_score_inside_a_running_event_loop(local_server):
    judge = Judge(JudgeConfig(metrics=["answer_relevancy"], max_tokens=256), base_url=local_server.base_url)
    question, answer, contexts, refs = CASES[0]

    async def notebook_cell():  # a Jupyter kernel runs cells inside an event loop
        asyncio.get_running_loop()
        sync_result = judge.score(question, answer, contexts, refs)
        async_result = await judge.ascore(question, answer, contexts, refs)
        return sync_result, async_result

    sync_result, async_result = asyncio.run(notebook_cell())
    assert sync_result["answer_relevancy"].value is not None, sync_result
    assert 0.0 <= sync_result["answer_relevancy"].value <= 1.0
    assert async_result == sync_result  # temperature 0, decoded from a reset state: identical
    assert judge.calls == 2


# ---------------------------------------------------------------- a fake OpenAI-compatible endpoint


class _FakeEndpoint:
    """A chat-completions server on 127.0.0.1 answering `content` (never JSON unless told)."""

    def __init__(self, content: str = "I think the answer is quite good, maybe 0.8 out of 1?") -> None:
        self.content = content
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.auth.append(self.headers.get("Authorization"))
                if body.get("model") == "no-such-model":
                    status, reply = 400, {"error": {"message": "model no-such-model does not exist"}}
                else:
                    status, reply = 200, {
                        "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": fake.content}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("provider", ["openai", "local"])
def test_garbage_answers_are_parse_failures_never_zero(provider, tmp_path):
    with _FakeEndpoint() as fake:
        cfg = JudgeConfig(provider=provider, metrics=list(JUDGE_METRICS),
                          **({"model": "judge-model"} if provider == "openai" else {}))
        judge = Judge(cfg, base_url=fake.base_url, cache_dir=tmp_path)
        scores = judge.score(*CASES[0])
        calls = judge.calls
        again = judge.score(*CASES[0])
        judge.close()
    assert set(scores) == set(JUDGE_METRICS)
    for metric, score in scores.items():
        assert score.value is None, score
        assert score.error.startswith(f"{metric}: could not parse the judge's answer"), score.error
        assert "I think the answer is quite good" in score.error  # the reply is quoted
    assert calls == len(JUDGE_METRICS)  # each metric stops at its first unparseable reply
    assert again == scores and judge.calls == 2 * calls and judge.cache_hits == 0  # failures are not cached
    # The response_format style follows the provider.
    formats = [r["response_format"] for r in fake.requests]
    if provider == "openai":
        assert all(f["type"] == "json_schema" and f["json_schema"]["strict"] is False for f in formats)
        assert all("properties" in f["json_schema"]["schema"] for f in formats)
    else:
        assert all(f["type"] == "json_object" and "properties" in f["schema"] for f in formats)
    assert {r["temperature"] for r in fake.requests} == {0.0}


def test_endpoint_error_is_reported(tmp_path):
    with _FakeEndpoint() as fake:
        judge = Judge(JudgeConfig(provider="openai", model="no-such-model", metrics=["faithfulness"]),
                      base_url=fake.base_url)
        scores = judge.score(*CASES[0])
    error = scores["faithfulness"].error
    assert scores["faithfulness"].value is None
    assert error.startswith("faithfulness: the judge endpoint failed") and "HTTP 400" in error
    assert "no-such-model does not exist" in error


def test_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("WB_TEST_JUDGE_KEY", raising=False)
    cfg = JudgeConfig(provider="openai", model="gpt-4.1-mini", base_url="http://127.0.0.1:9/v1",
                      api_key_env="WB_TEST_JUDGE_KEY")
    with pytest.raises(ModelError, match="WB_TEST_JUDGE_KEY"):
        Judge(cfg)


def test_api_key_is_sent_and_never_shown(monkeypatch):
    monkeypatch.setenv("WB_TEST_JUDGE_KEY", "sk-test-secret-1234")
    with _FakeEndpoint('{"question": "Who won?", "noncommittal": 0}') as fake:
        cfg = JudgeConfig(provider="openai", model="judge-model", api_key_env="WB_TEST_JUDGE_KEY",
                          metrics=["answer_relevancy"])
        judge = Judge(cfg, base_url=fake.base_url)
        scores = judge.score("Who won Super Bowl 50?", "The Denver Broncos won.", [], [])
    assert fake.auth == ["Bearer sk-test-secret-1234"]
    assert "sk-test" not in repr(judge)
    score = scores["answer_relevancy"].value
    assert score is not None and 0.0 < score <= 1.0  # MiniLM cosine of two related questions


# ---------------------------------------------------------------- pieces without an endpoint


def test_response_format_styles():
    from ragas.metrics.collections.context_recall.util import ContextRecallOutput

    local = response_format(ContextRecallOutput, "llama_cpp")
    assert local["type"] == "json_object"
    assert local["schema"]["properties"]["classifications"]["minItems"] == 1
    item = local["schema"]["$defs"]["ContextRecallClassification"]["properties"]["attributed"]
    assert item["enum"] == [0, 1]
    remote = response_format(ContextRecallOutput, "json_schema")
    assert remote["type"] == "json_schema"
    assert remote["json_schema"]["name"] == "ContextRecallOutput" and remote["json_schema"]["strict"] is False
    assert "minItems" not in remote["json_schema"]["schema"]["properties"]["classifications"]
    with pytest.raises(ValueError, match="style"):
        response_format(ContextRecallOutput, "xml")


def test_out_of_range_and_nan_are_errors():
    assert Judge._checked("context_recall", 2.0, []) == JudgeScore(None, "context_recall: score 2.0 is outside [0, 1]")
    assert Judge._checked("faithfulness", -0.5, []).value is None
    nan = Judge._checked("faithfulness", float("nan"), [])
    assert nan.value is None and "NaN" in nan.error
    assert Judge._checked("context_recall", 1.0 + 1e-9, []) == JudgeScore(1.0)  # float slack only
    assert Judge._checked("context_recall", 0.5, []) == JudgeScore(0.5)


def test_local_judge_needs_a_base_url():
    with pytest.raises(ModelError, match="LocalModelServer"):
        Judge(JudgeConfig())


@pytest.mark.slow
def test_sweep_with_a_judge_logs_judged_metrics_and_without_says_off(tmp_path):
    """Integration through real HTTP: the judge endpoint answers schema-valid JSON (latency endpoint)."""
    import mlflow

    from conftest import small_spec
    from workbench.testing.fake_endpoint import LatencyEndpoint
    from workbench.runner.sweep import run_sweep

    with LatencyEndpoint(latency=0.01) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
        off = run_sweep(spec, progress=False)
        assert off.to_frame()["llm_judge"].iloc[0].startswith("off")
        assert "faithfulness" not in off.to_frame().columns
        assert any("no judge configured" in n for n in off.notes)
        spec["judge"] = {"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}
        on = run_sweep(spec, progress=False)
    frame = on.to_frame()
    q = on.questions()
    for metric in ("faithfulness", "answer_relevancy", "context_precision", "context_recall"):
        assert metric in q.columns
        scored = q[metric].dropna()
        errors = q[f"{metric}_error"].dropna()
        assert len(scored) + len(errors) == len(q)  # every cell either scored or failed with a reason
        assert ((scored >= 0) & (scored <= 1)).all()
        if len(scored):
            assert frame[metric].iloc[0] == pytest.approx(scored.mean())
            metrics = mlflow.MlflowClient(spec["tracking"]["tracking_uri"]).get_run(on.run_ids[on.variants[0].hash]).data.metrics
            assert metrics[f"{metric}/mean"] == round_sig(scored.mean())  # logged to 4 significant digits


def test_score_cells_judges_a_variant_concurrently_through_one_client_then_closes(tmp_path):
    """A variant's cells at once: requests in flight bounded by execution.concurrency, one client for all,
    each cell handed back as it is judged, a failed cell left alone, and close() ends the client."""
    from workbench.scoring.cell import Cell
    from workbench.spec import ExecutionConfig
    from workbench.testing.fake_endpoint import LatencyEndpoint

    question, answer, contexts, refs = CASES[0]
    cells = [Cell(variant_hash="v" * 64, variant="v" * 12, question_id=f"q{i}", question=f"{question} ({i})",
                  answer=answer, contexts=contexts, reference_answers=refs, error=None) for i in range(8)]
    cells.append(Cell(variant_hash="v" * 64, variant="v" * 12, question_id="q8", question=question, answer=None,
                      error="HTTP 500"))
    metrics = ["faithfulness", "context_recall"]
    with LatencyEndpoint(latency=0.2) as ep:
        cfg = JudgeConfig(provider="openai", model="latency-endpoint", metrics=metrics)
        judge = Judge(cfg, base_url=ep.base_url, cache_dir=tmp_path,
                      execution=ExecutionConfig(concurrency=4, timeout_s=30, max_retries=0))
        seen: list[int] = []
        judged = asyncio.run(judge.score_cells(cells, on_cell=lambda i, cell: seen.append(i)))
        client = judge._client
        again = asyncio.run(judge.score_cells(cells[:2]))  # another event loop: the same client
        stats = ep.stats()
        assert judge._client is client
        judge.close()
    assert 1 < stats["max_in_flight"] <= 4  # concurrent, and bounded by execution.concurrency
    assert judge.calls == stats["chat_calls"] > 0
    assert judge.limits.admitted == judge.calls  # every request went through the sweep's endpoint limits
    assert sorted(seen) == list(range(8)) and judged[8] is cells[8]  # the failed cell is not judged
    for cell in judged[:8]:
        row = cell.to_row()
        for metric in metrics:
            assert (row[metric] is None) != (row[f"{metric}_error"] is None), row  # a value or a reason
            assert row[metric] is None or 0.0 <= row[metric] <= 1.0
    assert [c.scores for c in again] == [c.scores for c in judged[:2]]
    assert client.is_closed()
    with pytest.raises(ModelError, match="closed"):
        judge.score(question, answer, contexts, refs)


def test_judge_takes_the_sweeps_rate_limits_and_a_limit_holds_requests_back():
    """The judge admits its requests through the executor's EndpointLimits, built from the spec's
    execution; with one request per minute a second request waits, without a limit it does not."""
    from workbench.rag.executor import EndpointLimits
    from workbench.spec import ExecutionConfig

    ex = ExecutionConfig(concurrency=3, requests_per_minute=1, tokens_per_minute=5000)
    judge = Judge(JudgeConfig(provider="openai", model="m"), base_url="http://127.0.0.1:9/v1", execution=ex)
    judge.close()
    assert isinstance(judge.limits, EndpointLimits) and judge.max_concurrency == 3
    assert judge.limits.rpm.max_rate == 1 and judge.limits.tpm.max_rate == 5000

    async def admitted_within(limits: EndpointLimits, seconds: float) -> int:
        async def one() -> None:
            async with limits.admit(10):
                pass

        try:
            async with asyncio.timeout(seconds):
                await one()
                await one()
        except TimeoutError:
            pass
        return limits.admitted

    assert asyncio.run(admitted_within(judge.limits, 0.3)) == 1  # the second waits for the next minute
    assert asyncio.run(admitted_within(EndpointLimits.for_endpoint(ExecutionConfig(), local=False), 0.3)) == 2
