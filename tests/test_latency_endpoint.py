"""The latency-controlled, fault-injecting OpenAI-compatible endpoint, over real HTTP via `openai`."""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx
import openai
import pytest

from workbench.testing.fake_endpoint import LatencyEndpoint, async_client, schema_instance

L = 0.2
CONTEXT = ("Context: Super Bowl 50 was an American football game to determine the champion of the "
           "National Football League for the 2015 season. The Denver Broncos defeated the Carolina "
           "Panthers 24 to 10 at Levi's Stadium in Santa Clara, California.")


def _messages(question: str) -> list[dict]:
    return [{"role": "system", "content": "Answer from the context."},
            {"role": "user", "content": f"{CONTEXT}\nQuestion: {question}"}]


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=L, dim=64) as ep:
        yield ep


@pytest.fixture(scope="module")
def client(endpoint):
    with openai.OpenAI(base_url=endpoint.base_url, api_key="x", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def faulty():
    """Every request faulted; the kind is switched per test with configure()."""
    with LatencyEndpoint(latency=0.05, fail_rate=1.0, faults=("429",), timeout_sleep=5.0, retry_after=2) as ep:
        yield ep


# ---------------------------------------------------------------- chat


def test_chat_latency_determinism_usage_and_model(endpoint, client):
    endpoint.reset_stats()
    start = time.monotonic()
    first = client.chat.completions.create(model="my-model", messages=_messages("Who won?"))
    elapsed = time.monotonic() - start
    assert elapsed >= L
    again = client.chat.completions.create(model="my-model", messages=_messages("Who won?"))
    other = [client.chat.completions.create(model="my-model", messages=_messages(f"Question {i}?"))
             .choices[0].message.content for i in range(4)]

    answer = first.choices[0].message.content
    assert answer and answer == again.choices[0].message.content
    assert len(set(other + [answer])) > 1  # different messages usually give different answers
    assert all(word in CONTEXT + " Question: Who won?" for word in answer.split())
    assert first.object == "chat.completion" and first.id.startswith("chatcmpl-")
    assert first.model == "my-model"
    assert first.choices[0].finish_reason == "stop"
    usage = first.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.completion_tokens == len(answer.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    words = len("Answer from the context.".split()) + len(f"{CONTEXT}\nQuestion: Who won?".split())
    assert usage.prompt_tokens == int(words * 1.3)

    stats = endpoint.stats()
    assert stats["chat_calls"] == 6
    assert stats["tokens_prompt"] >= 6 * usage.prompt_tokens - 10
    assert stats["tokens_completion"] > 0


def test_chat_max_tokens_caps_words(client):
    for i in range(3):
        response = client.chat.completions.create(model="m", messages=_messages(f"q{i}"), max_tokens=2)
        content = response.choices[0].message.content
        assert 1 <= len(content.split()) <= 2
        assert response.usage.completion_tokens == len(content.split())
        assert response.choices[0].finish_reason in ("stop", "length")
    one = client.chat.completions.create(model="m", messages=_messages("cap"), max_tokens=1)
    assert len(one.choices[0].message.content.split()) == 1 and one.choices[0].finish_reason == "length"


def test_json_schema_response_format(client):
    schema = {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "confidence": {"type": "number"},
            "count": {"type": "integer"},
            "grounded": {"type": "boolean"},
            "verdict": {"type": "string", "enum": ["yes", "no"]},
            "claims": {"type": "array", "items": {"$ref": "#/$defs/Claim"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["answer", "confidence", "count", "grounded", "verdict", "claims", "note"],
        "additionalProperties": False,
        "$defs": {"Claim": {"type": "object", "properties": {"text": {"type": "string"},
                                                              "supported": {"type": "boolean"}},
                            "required": ["text", "supported"], "additionalProperties": False}},
    }
    response = client.chat.completions.create(
        model="m", messages=_messages("Who won?"),
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}},
    )
    data = json.loads(response.choices[0].message.content)
    assert set(data) == set(schema["required"])
    assert isinstance(data["answer"], str) and data["answer"]
    assert isinstance(data["confidence"], (int, float)) and not isinstance(data["confidence"], bool)
    assert isinstance(data["count"], int) and not isinstance(data["count"], bool)
    assert data["grounded"] is True and data["verdict"] == "yes"
    assert isinstance(data["note"], str)
    assert isinstance(data["claims"], list) and len(data["claims"]) == 1
    assert set(data["claims"][0]) == {"text", "supported"}
    assert isinstance(data["claims"][0]["text"], str) and data["claims"][0]["supported"] is True

    plain = client.chat.completions.create(model="m", messages=_messages("x"), response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.choices[0].message.content), dict)


def test_schema_instance_bounds():
    assert schema_instance({"type": "integer", "minimum": 3}, "a") == 3
    assert schema_instance({"type": "array", "items": {"type": "integer"}, "minItems": 2}, "a") == [1, 1]
    assert schema_instance({"type": "string", "maxLength": 3}, "abcdef") == "abc"
    assert schema_instance({"type": ["null", "boolean"]}, "a") is True


# ---------------------------------------------------------------- embeddings


def test_embeddings_shape_norm_determinism(endpoint, client):
    endpoint.reset_stats()
    texts = ["alpha beta", "gamma", "alpha beta"]
    first = client.embeddings.create(model="e", input=texts)  # the client asks for base64 by default
    floats = client.embeddings.create(model="e", input=texts, encoding_format="float")
    vectors = [d.embedding for d in first.data]
    assert len(vectors) == 3 and all(len(v) == 64 for v in vectors)
    for v in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    for a, b in zip(vectors, (d.embedding for d in floats.data)):
        assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b))
    assert first.usage.prompt_tokens > 0
    stats = endpoint.stats()
    assert stats["embedding_calls"] == 2 and stats["embedding_inputs"] == 6


# ---------------------------------------------------------------- concurrency


def test_concurrent_requests_overlap(endpoint):
    """32 requests at L=0.2 overlap on the server. Best of 3 bursts: on a loaded 2-core machine the
    openai client's own CPU (~2-4 ms a request) can push a single burst past the bound."""
    async def bursts(n: int, tries: int = 3) -> list[tuple[float, dict]]:
        ac = async_client(endpoint.base_url, timeout=10)
        out = []
        try:
            await ac.chat.completions.create(model="m", messages=_messages("warm-up"))
            for _ in range(tries):
                endpoint.reset_stats()
                start = time.monotonic()
                results = await asyncio.gather(*[ac.chat.completions.create(model="m", messages=_messages(f"q{i}"))
                                                 for i in range(n)])
                elapsed = time.monotonic() - start
                assert all(r.choices for r in results)
                out.append((elapsed, endpoint.stats()))
                if elapsed < 0.6:
                    break
            return out
        finally:
            await ac.close()

    runs = asyncio.run(bursts(32))
    elapsed, stats = min(runs, key=lambda run: run[0])
    assert L <= elapsed < 0.6, [round(e, 3) for e, _ in runs]
    assert stats["max_in_flight"] >= 16 and stats["chat_calls"] == 32 and stats["in_flight"] == 0


# ---------------------------------------------------------------- faults


def _fault(faulty: LatencyEndpoint, kind: str, **client_kw) -> openai.OpenAI:
    faulty.configure(faults=[kind])
    faulty.reset_stats()
    return openai.OpenAI(base_url=faulty.base_url, api_key="x", max_retries=0, **client_kw)


def _counted(faulty: LatencyEndpoint, kind: str, calls: int, embedding_calls: int = 0) -> None:
    stats = faulty.stats()
    assert stats["faults_injected"][kind] == calls + embedding_calls
    assert stats["faults_total"] == calls + embedding_calls
    assert stats["chat_calls"] == calls and stats["embedding_calls"] == embedding_calls


def test_fault_429_has_retry_after(faulty):
    client = _fault(faulty, "429")
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="m", messages=_messages("q"))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="e", input="x")
    _counted(faulty, "429", 1, 1)


def test_fault_500(faulty):
    client = _fault(faulty, "500")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=_messages("q"))
    assert info.value.status_code == 500
    _counted(faulty, "500", 1)


def test_fault_timeout(faulty):
    client = _fault(faulty, "timeout", timeout=0.5)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=_messages("q"))
    assert 0.5 <= time.monotonic() - start < 3
    _counted(faulty, "timeout", 1)
    deadline = time.monotonic() + 3  # the server stops sleeping once the client has gone
    while faulty.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert faulty.stats()["in_flight"] == 0


def test_fault_malformed(faulty):
    # Status 200 with Content-Type application/json and a truncated body: openai 1.x calls
    # response.json() and lets the json.JSONDecodeError through (it is not an openai.APIError).
    client = _fault(faulty, "malformed")
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="m", messages=_messages("q"))
    raw = httpx.post(faulty.base_url + "/chat/completions", json={"model": "m", "messages": _messages("q")})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.text)
    _counted(faulty, "malformed", 2)


def test_fault_empty(faulty):
    # Chat: no exception, a ChatCompletion whose `choices` is [] (an IndexError awaits code that
    # reads choices[0]). Embeddings (`data: []`): the client's default base64 post-parser raises
    # ValueError("No embedding data received"); with encoding_format="float" it returns data == [].
    client = _fault(faulty, "empty")
    response = client.chat.completions.create(model="m", messages=_messages("q"))
    assert isinstance(response, openai.types.chat.ChatCompletion) and response.choices == []
    with pytest.raises(ValueError, match="No embedding data"):
        client.embeddings.create(model="e", input=["a", "b"])
    assert client.embeddings.create(model="e", input=["a", "b"], encoding_format="float").data == []
    _counted(faulty, "empty", 1, 2)


def test_fault_rate_is_deterministic_for_a_seed(faulty):
    faulty.configure(fail_rate=0.5, faults=["429", "500"], seed=7)
    try:
        def run() -> list[str]:
            faulty.reset_stats()  # also re-seeds the fault RNG
            client = openai.OpenAI(base_url=faulty.base_url, api_key="x", max_retries=0)
            outcome = []
            for i in range(12):
                try:
                    client.chat.completions.create(model="m", messages=_messages(f"q{i}"))
                    outcome.append("ok")
                except openai.RateLimitError:
                    outcome.append("429")
                except openai.InternalServerError:
                    outcome.append("500")
            return outcome

        first, second = run(), run()
        assert first == second
        faults = [o for o in first if o != "ok"]
        assert 0 < len(faults) < 12
        assert faults == ["429", "500"] * (len(faults) // 2) + ["429"] * (len(faults) % 2)  # round-robin
        stats = faulty.stats()
        assert stats["faults_injected"]["429"] == first.count("429")
        assert stats["faults_injected"]["500"] == first.count("500")
    finally:
        faulty.configure(fail_rate=1.0, faults=["429"], seed=0)
