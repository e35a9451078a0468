"""Misbehaving endpoints never hang, crash or leak (issue 13): every case runs against a real local HTTP
server (`workbench.testing.fake_endpoint`, whose `fault:<kind>` models always misbehave that way).

The outcome of each case is one clear error naming the endpoint and what was wrong, a usable answer
with a note, or a recorded failed cell — never a traceback, a hang (pytest-timeout bounds every test),
a leaked key (searched for in stderr, logs, cells.jsonl and the MLflow store) or a crashed sweep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from conftest import small_spec
from workbench.errors import ConfigError, ModelError
from workbench.rag.chat import BadResponse, ChatModel, cost_usd
from workbench.rag.embeddings import OpenAIEmbedder
from workbench.rag.replies import MalformedReply, parse_chat_reply
from workbench.scrub import scrub
from workbench.spec import EmbeddingConfig, JudgeConfig, ModelConfig, parse_model
from workbench.testing.fake_endpoint import LatencyEndpoint

pytestmark = pytest.mark.timeout(120)

PLANTED = "sk-wb-HOSTILE-7c1d9e2f4a6b8c0d1e3f"  # in the environment; the locked endpoint wants another key
KEY_ENV = "WB_HOSTILE_KEY"
QUESTION = [{"role": "user", "content": "Which team won Super Bowl 50 at Levi's Stadium in Santa Clara?"}]
MAX_TOKENS = 16
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def ep():
    with LatencyEndpoint(latency=0.01, trickle_interval=0.2) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def locked():
    """Answers 401 "Incorrect API key provided: <the key sent>" to any key but its own, as real APIs do."""
    with LatencyEndpoint(latency=0.01, require_key="sk-the-right-key-000000") as endpoint:
        yield endpoint


@pytest.fixture
def planted(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, PLANTED)
    caplog.set_level(logging.DEBUG)  # openai and httpx log at debug: none of it may hold the key
    return PLANTED


def chat(endpoint, model: str, *, timeout: float = TIMEOUT, retries: int = 0, **cfg) -> ChatModel:
    config = ModelConfig(provider="openai", model=model, base_url=endpoint.base_url, max_tokens=MAX_TOKENS, **cfg)
    return ChatModel(config, timeout=timeout, max_retries=retries)


def generate(model: ChatModel, mode: str):
    if mode == "sync":
        return model.generate(QUESTION)

    async def go():
        try:
            return await model.agenerate(QUESTION)
        finally:
            await model.aclose()

    return asyncio.run(go())


# ---------------------------------------------------------------- 1. a trickle never hangs

def _trickle_chat(ep, mode):
    return lambda: generate(chat(ep, "fault:trickle"), mode)


def _trickle_embed(ep):
    cfg = EmbeddingConfig(provider="openai", model="fault:trickle", base_url=ep.base_url)
    return lambda: OpenAIEmbedder(cfg, timeout=TIMEOUT, max_retries=0).embed(["a text"])


def _trickle_judge(ep):
    import ragas.metrics.collections  # noqa: F401  (imported before the clock starts: ~2-3 s)

    from workbench.scoring.judge import Judge

    def run():
        cfg = JudgeConfig(provider="openai", model="fault:trickle", base_url=ep.base_url, metrics=["faithfulness"])
        with Judge(cfg, timeout=TIMEOUT, max_retries=0) as judge:
            score = judge.score("Who won?", "The Broncos won.", ["The Denver Broncos won Super Bowl 50."], ["Broncos"])
        raise ModelError(score["faithfulness"].error)  # no score: the reason is the outcome under test

    return run


@pytest.mark.parametrize("client", ["chat-async", "chat-sync", "embeddings", "judge"])
def test_a_trickling_endpoint_times_out_within_timeout_s(ep, client):
    """Headers at once, then one byte every 0.2 s: httpx's read timeout never fires; timeout_s must."""
    make = {"chat-async": lambda: _trickle_chat(ep, "async"), "chat-sync": lambda: _trickle_chat(ep, "sync"),
            "embeddings": lambda: _trickle_embed(ep), "judge": lambda: _trickle_judge(ep)}[client]
    call = make()
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"timed out|did not answer within") as info:
        call()
    elapsed = time.perf_counter() - start
    assert elapsed < TIMEOUT + 2.5, f"{client} took {elapsed:.1f} s with timeout_s={TIMEOUT}"
    assert ep.base_url in str(info.value)


def test_the_deadline_covers_each_retry_and_the_sweep_executor_gives_up(ep):
    """openai's own retries each get the whole timeout; the call then fails (it is not a bad reply)."""
    from workbench.rag.executor import Executor
    from workbench.spec import ExecutionConfig

    model = chat(ep, "fault:trickle", retries=1)

    async def go():
        try:
            return await Executor(ExecutionConfig(timeout_s=TIMEOUT, max_retries=3)).generate(model, QUESTION)
        finally:
            await model.aclose()

    start = time.perf_counter()
    with pytest.raises(ModelError, match="timed out after 1 s"):
        asyncio.run(go())
    assert 2 * TIMEOUT <= time.perf_counter() - start < 2 * TIMEOUT + 4  # two attempts, bounded


# ---------------------------------------------------------------- 2. malformed 200 replies

MALFORMED = [
    ("malformed", r"the body is not JSON"),
    ("empty", r"'choices' is empty"),
    ("no_message", r"'choices\[0\]' has no 'message'"),
    ("null_message", r"'choices\[0\]\.message' is null, not an object"),
    ("choices_string", r"'choices' is a string, not a list"),
    ("content_number", r"'choices\[0\]\.message\.content' is a number"),
]


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("kind,what", MALFORMED, ids=[k for k, _ in MALFORMED])
def test_a_malformed_reply_is_a_bad_response_naming_the_endpoint_and_the_field(ep, kind, what, mode):
    with pytest.raises(BadResponse, match=what) as info:
        generate(chat(ep, f"fault:{kind}"), mode)
    assert f"{ep.base_url} sent a malformed reply for model 'fault:{kind}'" in str(info.value)


def test_a_malformed_reply_is_retried_then_raised(ep):
    from workbench.rag.executor import Executor
    from workbench.spec import ExecutionConfig

    model = chat(ep, "fault:null_message")
    executor = Executor(ExecutionConfig(max_retries=2))

    async def go():
        try:
            await executor.generate(model, QUESTION)
        finally:
            await model.aclose()

    with pytest.raises(BadResponse, match="null"):
        asyncio.run(go())
    assert executor.attempts == 3 and executor.calls == 0


@pytest.mark.parametrize("kind,what", [("null_message", "'choices[0].message' is null"),
                                       ("choices_string", "'choices' is a string, not a list")])
def test_a_malformed_reply_to_the_judge_is_a_score_of_none_with_the_reason(ep, kind, what):
    from workbench.scoring.judge import Judge

    cfg = JudgeConfig(provider="openai", model=f"fault:{kind}", base_url=ep.base_url, metrics=["faithfulness"])
    with Judge(cfg, timeout=10, max_retries=0) as judge:
        score = judge.score("Who won?", "The Broncos won.", ["The Denver Broncos won Super Bowl 50."], ["Broncos"])
    assert score["faithfulness"].value is None
    assert f"{ep.base_url} sent a malformed reply: {what}" in score["faithfulness"].error


PRICED = {"price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}
USABLE = [  # kind, check(generation, normal generation)
    ("content_parts", lambda g, ok: g.text == ok.text and g.notes == ()),
    ("usage_strings", lambda g, ok: g.text == ok.text and g.prompt_tokens is None and g.completion_tokens is None
     and any("usage.completion_tokens was 'many'" in n for n in g.notes)),
    ("usage_negative", lambda g, ok: g.prompt_tokens is None and g.completion_tokens is None
     and any("-1000000" in n and "unknown" in n for n in g.notes)),
    ("huge", lambda g, ok: len(g.text) == MAX_TOKENS * 16 and g.prompt_tokens == ok.prompt_tokens
     and any("truncated to 256 characters" in n and "20,000,000" in n for n in g.notes)),
]


@pytest.mark.parametrize("kind,check", USABLE, ids=[k for k, _ in USABLE])
def test_an_odd_but_usable_reply_is_kept_with_a_note_and_never_a_negative_cost(ep, kind, check):
    ok = generate(chat(ep, "latency-endpoint", **PRICED), "sync")
    gen = generate(chat(ep, f"fault:{kind}", timeout=30, **PRICED), "async")  # 20 MB on a busy 2-core host
    assert check(gen, ok), gen
    cost = cost_usd(chat(ep, f"fault:{kind}", **PRICED).cfg, gen.prompt_tokens, gen.completion_tokens)
    assert cost is None or cost >= 0


# ---------------------------------------------------------------- 4. keys never leak

def _leak_calls(endpoint):
    """(client, call) pairs that each send the planted key to an endpoint that echoes it in a 401."""
    from workbench.scoring.judge import Judge

    def judge():
        cfg = JudgeConfig(provider="openai", model="latency-endpoint", base_url=endpoint.base_url,
                          api_key_env=KEY_ENV, metrics=["faithfulness"])
        with Judge(cfg, timeout=5, max_retries=0) as j:
            error = j.score("Who won?", "The Broncos.", ["The Denver Broncos won."], ["Broncos"])["faithfulness"].error
        raise ModelError(error)

    model = ModelConfig(provider="openai", model="latency-endpoint", base_url=endpoint.base_url, api_key_env=KEY_ENV)
    emb = EmbeddingConfig(provider="openai", model="latency-endpoint", base_url=endpoint.base_url, api_key_env=KEY_ENV)
    return {
        "chat-generate": lambda: ChatModel(model, max_retries=0).generate(QUESTION),
        "chat-agenerate": lambda: generate(ChatModel(model, max_retries=0), "async"),
        "chat-check": lambda: ChatModel(model, max_retries=0).check(),
        "embeddings-embed": lambda: OpenAIEmbedder(emb, max_retries=0).embed(["a text"]),
        "embeddings-check": lambda: OpenAIEmbedder(emb, max_retries=0).check(),
        "judge": judge,
    }


@pytest.mark.parametrize("client", ["chat-generate", "chat-agenerate", "chat-check", "embeddings-embed",
                                    "embeddings-check", "judge"])
def test_a_401_echoing_the_key_gives_one_error_naming_the_env_var_and_never_the_key(locked, planted, client,
                                                                                 capfd, caplog):
    with pytest.raises(ModelError) as info:
        _leak_calls(locked)[client]()
    message = str(info.value)
    assert locked.base_url in message and KEY_ENV in message, message
    assert planted not in message and planted[8:24] not in message
    out, err = capfd.readouterr()
    assert planted not in out + err
    assert planted not in caplog.text


@pytest.mark.parametrize("text,secrets,hidden", [
    (f"Incorrect API key provided: {PLANTED}.", [PLANTED], PLANTED),
    (f"key ...{PLANTED[10:30]}...", [PLANTED], PLANTED[10:30]),  # echoed in part
    ("Incorrect API key provided: sk-proj-ab**************wxyz.", [], "sk-proj-ab"),  # OpenAI's masked echo
    ("GET https://bob:hunter2-secret@api.example.com/v1 failed", [], "hunter2-secret"),
    ("GET https://api.example.com/v1?api-key=abc123def&api-version=2024 failed", [], "abc123def"),
    ("Authorization: Bearer abcdefghijkl rejected", [], "abcdefghijkl"),
])
def test_scrub_masks_known_keys_their_pieces_and_key_shaped_text(text, secrets, hidden):
    out = scrub(text, secrets)
    assert hidden not in out and "***" in out


@pytest.mark.parametrize("text", [
    "the request to http://127.0.0.1:8011/v1 timed out after 2 s (model 'gpt-4.1-mini'); api-version=2024",
    "Requested tokens (2100) exceed context window of 2048; max_tokens: 16",
    "the model answered basic questions about risk-free task-12345678",
])
def test_scrub_leaves_ordinary_error_text_alone(text):
    assert scrub(text, ["abc"]) == text  # a "secret" under 4 characters would mask ordinary words


@pytest.mark.parametrize("url,where", [
    ("https://bob:sk-secret-1234@api.example.com/v1", "user:password@"),
    ("https://sk-secret-1234@api.example.com/v1", "user:password@"),
    ("https://api.example.com/v1?api-key=sk-secret-1234", "'api-key'"),
    ("https://api.example.com/v1?api_key=sk-secret-1234", "'api_key'"),
    ("https://api.example.com/v1?x=1&access_token=sk-secret-1234", "'access_token'"),
])
@pytest.mark.parametrize("section", ["model", "embedding", "judge"])
def test_credentials_in_a_base_url_are_refused_at_validation_without_echoing_them(url, where, section):
    from workbench.spec import SweepSpec

    spec = small_spec(Path("/tmp/unused"))
    entry = {"provider": "openai", "model": "m", "base_url": url}
    if section == "judge":
        spec["judge"] = entry
    else:
        spec["space"][section] = [entry]
    with pytest.raises(ConfigError, match="base_url carries credentials") as info:
        parse_model(SweepSpec, spec, "spec.yaml")
    assert where in str(info.value) and "api_key_env" in str(info.value)
    assert "sk-secret-1234" not in str(info.value)
    with pytest.raises(ValueError) as direct:  # pydantic's own message, built directly in Python
        ModelConfig(provider="openai", model="m", base_url=url)
    assert "sk-secret-1234" not in str(direct.value)


def test_a_base_url_with_harmless_query_parameters_is_accepted():
    cfg = ModelConfig(provider="openai", model="m", base_url="https://x.openai.azure.com/v1?api-version=2024-02-01")
    assert cfg.base_url.endswith("api-version=2024-02-01")


# ---------------------------------------------------------------- the reply parser, case by case

@pytest.mark.parametrize("body,what", [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "a list, not a JSON object"),
    (b'{"error": {"message": "overloaded"}}', "no 'choices': 'overloaded'"),
    (b'{"choices": [null]}', r"'choices\[0\]' is null"),
    (b'{"choices": [{"message": {"content": [1]}}]}', r"content\[0\]' is a number"),
])
def test_parse_chat_reply_names_what_is_wrong(body, what):
    with pytest.raises(MalformedReply, match=what):
        parse_chat_reply(body)


def test_parse_chat_reply_keeps_what_is_usable():
    body = {"choices": [{"message": {"content": None}, "finish_reason": 7}], "model": 3,
            "usage": {"prompt_tokens": 12.0, "completion_tokens": 10**12, "total_tokens": "x"}}
    reply = parse_chat_reply(json.dumps(body))
    assert reply.text == "" and reply.finish_reason is None and reply.model is None
    assert reply.prompt_tokens == 12 and reply.completion_tokens is None  # absurd: unknown
    assert len(reply.notes) == 1 and "usage.completion_tokens" in reply.notes[0]
    assert parse_chat_reply('{"choices": [{"message": {"content": "x"}}], "usage": "lots"}').notes == (
        "usage is a string, not an object: token counts unknown",)


# ---------------------------------------------------------------- whole sweeps: never crashed, never leaked

SWEEP_CASES = {  # model -> what its cells must show (None: answered; str: the error must contain it)
    "latency-endpoint": None,
    "fault:trickle": "timed out after 1 s",
    "fault:malformed": "the body is not JSON",
    "fault:empty": "'choices' is empty",
    "fault:no_message": "'choices[0]' has no 'message'",
    "fault:null_message": "'choices[0].message' is null",
    "fault:choices_string": "'choices' is a string, not a list",
    "fault:content_number": "'choices[0].message.content' is a number",
    "fault:unauthorized": f"rejected the API key for model 'fault:unauthorized': check the environment variable {KEY_ENV}",
    "fault:content_parts": None,
    "fault:usage_strings": None,
    "fault:usage_negative": None,
    "fault:huge": None,
}


def _leaks(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow  # a real sweep of 13 variants tracked in MLflow: ~15 s alone, a minute on a loaded host
def test_one_sweep_over_every_misbehaviour_finishes_records_each_failure_and_leaks_nothing(
        tmp_path, ep, planted, capfd, caplog):
    import mlflow

    from workbench.runner.sweep import run_sweep

    ep.configure(huge_chars=2_000_000)  # 20 MB needs more than the 1 s the trickle cells get
    try:
        _sweep_over_every_misbehaviour(tmp_path, ep, planted, capfd, caplog, mlflow, run_sweep)
    finally:
        ep.configure(huge_chars=20_000_000)


def _sweep_over_every_misbehaviour(tmp_path, ep, planted, capfd, caplog, mlflow, run_sweep):

    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 2
    spec["space"]["model"] = [{"provider": "openai", "model": m, "base_url": ep.base_url, "api_key_env": KEY_ENV,
                               "max_tokens": MAX_TOKENS, **PRICED} for m in SWEEP_CASES]
    spec["execution"] = {"concurrency": 16, "timeout_s": TIMEOUT, "max_retries": 1}
    start = time.perf_counter()
    results = run_sweep(spec, progress=False)
    elapsed = time.perf_counter() - start
    q = results.questions()
    by_model = {v.short_hash: v.model.model for v in results.variants}
    q["model"] = q["variant"].map(by_model)
    assert len(q) == 2 * len(SWEEP_CASES)  # every cell recorded: none lost, the sweep not crashed
    good = q[q["model"] == "latency-endpoint"].set_index("question_id")
    for model, expected in SWEEP_CASES.items():
        cells = q[q["model"] == model]
        if expected is None:
            assert cells["error"].isna().all(), (model, cells["error"].tolist())
        else:
            assert cells["error"].str.contains(expected, regex=False).all(), (model, cells["error"].tolist())
            assert cells["error"].str.contains(ep.base_url, regex=False).all()
            assert cells["f1"].isna().all()  # a failure is never scored as 0
    assert (q["cost_usd"].dropna() >= 0).all()  # negative usage never makes a negative cost
    notes = q.set_index("model")["notes"] if "notes" in q else None
    for model in ("fault:usage_strings", "fault:usage_negative"):
        cells = q[q["model"] == model]
        assert cells["tokens_prompt"].isna().all() and cells["cost_usd"].isna().all()
        assert all(any("not a token count" in n for n in ns) for ns in notes[model])
    huge = q[q["model"] == "fault:huge"]
    assert (huge["answer"].str.len() == MAX_TOKENS * 16).all()
    assert all(any("answer truncated to 256 characters" in n and "2,000,000" in n for n in ns)
               for ns in notes["fault:huge"])
    parts = q[q["model"] == "fault:content_parts"].set_index("question_id")
    assert (parts["answer"] == good.loc[parts.index, "answer"]).all()  # the text parts, joined
    cells_file = next(tmp_path.rglob("cells.jsonl"))
    assert cells_file.stat().st_size < 200_000  # two 2 MB answers, stored capped
    client = mlflow.MlflowClient(spec["tracking"]["tracking_uri"])
    assert len(results.run_ids) == len(SWEEP_CASES)
    status = {by_model[v.short_hash]: client.get_run(r).info.status for v in results.variants
              for h, r in results.run_ids.items() if h == v.hash}
    assert len(status) == len(SWEEP_CASES) and "RUNNING" not in status.values()  # none left RUNNING
    assert status["latency-endpoint"] == "FINISHED"
    assert _leaks(tmp_path, planted) == []
    out, err = capfd.readouterr()
    assert planted not in out + err and planted not in caplog.text
    print(f"\nsweep over {len(SWEEP_CASES)} endpoints x 2 questions: {elapsed:.1f} s")


@pytest.mark.parametrize("who", ["variant", "judge"])
def test_a_bad_embedding_key_fails_the_sweep_before_any_work(tmp_path, ep, locked, planted, capfd, caplog, who):
    """The variants' embedder (dense retrieval) and the judge's (answer_relevancy) are checked up front."""
    from workbench.runner.sweep import run_sweep

    spec = small_spec(tmp_path, retrieval=[{"kind": "dense" if who == "variant" else "bm25", "k": 2}])
    spec["data"]["eval"]["limit"] = 2
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url}]
    embedding = {"provider": "openai", "model": "latency-endpoint", "base_url": locked.base_url, "api_key_env": KEY_ENV}
    if who == "variant":
        spec["space"]["embedding"] = [embedding]
    else:
        spec["judge"] = {"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url,
                         "metrics": ["answer_relevancy"], "embedding": embedding}
    ep.reset_stats(), locked.reset_stats()
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        run_sweep(spec, progress=False)
    message = str(info.value)
    assert f"the embeddings endpoint {locked.base_url} rejected the API key" in message and KEY_ENV in message
    assert time.perf_counter() - start < 20
    assert not list(tmp_path.rglob("cells.jsonl"))  # failed before any work
    assert locked.stats()["embedding_calls"] == 1 and ep.stats()["chat_calls"] == 0
    assert _leaks(tmp_path, planted) == []
    out, err = capfd.readouterr()
    assert planted not in out + err and planted not in caplog.text and planted not in message


def test_a_generation_cached_before_notes_existed_is_still_a_hit():
    """Generation.notes is new: entries cached by earlier versions must not all turn into misses."""
    from workbench.runner.generations import _from_entry

    entry = {"text": "Denver Broncos", "prompt_tokens": 40, "completion_tokens": 2, "latency_s": 0.2,
             "model": "m", "finish_reason": "stop"}
    old = _from_entry(entry)
    assert old is not None and old[0].notes == () and old[0].text == "Denver Broncos"
    new = _from_entry({**entry, "notes": ["answer truncated"]})
    assert new is not None and new[0].notes == ("answer truncated",)
