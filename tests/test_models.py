"""ChatModel over the real local server (openai client, HTTP), its error messages, and cost_usd."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from workbench.spec import DEFAULT_TEMPLATE, LOCAL_MODEL, ModelConfig
from workbench.errors import ModelError
from workbench.rag.chat import KEYLESS_PLACEHOLDER, ChatModel, Generation, cost_usd, resolve_api_key

SECRET = "sk-test-0123456789abcdefSECRET"
QUESTION = [{"role": "user", "content": DEFAULT_TEMPLATE.format(
    context="Mount Kilimanjaro, in Tanzania, is the highest mountain in Africa at 5,895 metres.",
    question="How high is Mount Kilimanjaro?",
)}]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


# ------------------------------------------------------------------ real completions


def test_generate_returns_text_usage_and_latency(local_server):
    generation = ChatModel(ModelConfig(), base_url=local_server.base_url).generate(QUESTION)
    assert isinstance(generation, Generation)
    assert generation.text and generation.text == generation.text.strip()
    assert generation.prompt_tokens > 20
    assert generation.completion_tokens > 0
    assert 0 < generation.latency_s < 60
    assert generation.model == LOCAL_MODEL
    assert generation.finish_reason in {"stop", "length"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        generation.text = "changed"


def test_generate_respects_max_tokens(local_server):
    model = ChatModel(ModelConfig(max_tokens=4), base_url=local_server.base_url)
    generation = model.generate([{"role": "user", "content": "Tell me everything you know about volcanoes."}])
    assert 0 < generation.completion_tokens <= 4
    assert generation.finish_reason == "length"


def test_generate_is_deterministic_at_temperature_zero(local_server):
    model = ChatModel(ModelConfig(), base_url=local_server.base_url)
    other = [{"role": "user", "content": "Name a colour."}]
    first = model.generate(QUESTION).text
    model.generate(other)
    assert model.generate(QUESTION).text == first


def test_request_params_carry_the_config():
    cfg = ModelConfig(temperature=0.3, max_tokens=7, top_p=0.9, seed=11)
    params = ChatModel(cfg, base_url="http://127.0.0.1:1/v1").request_params(QUESTION)
    assert params == {"model": LOCAL_MODEL, "messages": QUESTION, "temperature": 0.3, "max_tokens": 7,
                      "top_p": 0.9, "seed": 11}
    assert "top_p" not in ChatModel(ModelConfig(), base_url="http://127.0.0.1:1/v1").request_params(QUESTION)


def test_context_overflow_is_a_model_error_with_the_server_message(local_server):
    model = ChatModel(ModelConfig(), base_url=local_server.base_url)
    too_long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(ModelError, match="context window") as info:
        model.generate(too_long)
    assert local_server.base_url in str(info.value)


# ------------------------------------------------------------------ errors


def test_unreachable_base_url_is_a_model_error():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(ModelError) as info:
        ChatModel(ModelConfig(), base_url=url).generate(QUESTION)
    assert url in str(info.value)
    assert "check that the server is running" in str(info.value)


def test_local_model_without_base_url_says_to_start_the_server():
    with pytest.raises(ModelError, match="LocalModelServer"):
        ChatModel(ModelConfig())


def test_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("WB_TEST_MISSING_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # another variable's key must not leak either
    cfg = ModelConfig(provider="openai", model="gpt-4o-mini", api_key_env="WB_TEST_MISSING_KEY")
    with pytest.raises(ModelError) as info:
        ChatModel(cfg)
    message = str(info.value)
    assert "set the environment variable WB_TEST_MISSING_KEY" in message
    assert "gpt-4o-mini" in message
    assert SECRET not in message


def test_resolve_api_key(monkeypatch):
    assert resolve_api_key(ModelConfig(), "the local model") == KEYLESS_PLACEHOLDER
    monkeypatch.setenv("WB_TEST_KEY", SECRET)
    assert resolve_api_key(ModelConfig(api_key_env="WB_TEST_KEY"), "x") == SECRET
    monkeypatch.setenv("WB_TEST_KEY", "  ")
    with pytest.raises(ModelError, match="WB_TEST_KEY"):
        resolve_api_key(ModelConfig(api_key_env="WB_TEST_KEY"), "x")


class StubHandler(BaseHTTPRequestHandler):
    """Answers every chat completion with a fixed HTTP status and an OpenAI-style error body."""

    status = 401
    message = f"Incorrect API key provided: {SECRET}."

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"message": self.message, "type": "invalid_request_error"}}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_endpoint():
    servers = []

    def start(status: int, message: str) -> str:
        handler = type("Handler", (StubHandler,), {"status": status, "message": message})
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_rejected_key_names_the_variable_and_never_the_key(stub_endpoint, monkeypatch):
    url = stub_endpoint(401, f"Incorrect API key provided: {SECRET}.")
    monkeypatch.setenv("WB_TEST_KEY", SECRET)
    cfg = ModelConfig(provider="openai", model="gpt-4o-mini", base_url=url, api_key_env="WB_TEST_KEY")
    with pytest.raises(ModelError) as info:
        ChatModel(cfg).generate(QUESTION)
    message = str(info.value)
    assert "WB_TEST_KEY" in message
    assert SECRET not in message and "SECRET" not in message
    assert SECRET not in repr(ChatModel(cfg))


def test_unknown_model_is_named(stub_endpoint):
    url = stub_endpoint(404, "The model `gpt-nonexistent` does not exist")
    cfg = ModelConfig(provider="openai", model="gpt-nonexistent", base_url=url)
    with pytest.raises(ModelError, match="no model 'gpt-nonexistent'") as info:
        ChatModel(cfg).generate(QUESTION)
    assert "does not exist" in str(info.value)


def test_bad_request_carries_the_server_message(stub_endpoint):
    url = stub_endpoint(400, "max_tokens is too large for this model")
    cfg = ModelConfig(provider="openai", model="gpt-4o-mini", base_url=url)
    with pytest.raises(ModelError, match="max_tokens is too large for this model"):
        ChatModel(cfg).generate(QUESTION)


# ------------------------------------------------------------------ cost


def test_configured_prices_win():
    cfg = ModelConfig(provider="openai", model="gpt-4o-mini", price_input_per_mtok=2.0, price_output_per_mtok=8.0)
    assert cost_usd(cfg, 1_000, 500) == pytest.approx((1_000 * 2.0 + 500 * 8.0) / 1e6)
    assert cost_usd(ModelConfig(price_input_per_mtok=1.0, price_output_per_mtok=1.0), 1e6, 0) == pytest.approx(1.0)


def test_local_model_costs_nothing():
    assert cost_usd(ModelConfig(), 450, 48) == 0.0


def test_known_openai_model_is_priced_by_genai_prices():
    cfg = ModelConfig(provider="openai", model="gpt-4o-mini")
    small, large = cost_usd(cfg, 1_000, 100), cost_usd(cfg, 2_000, 200)
    assert small is not None and 0 < small < 0.01
    assert large == pytest.approx(2 * small)
    assert cost_usd(cfg, 1_000, 200) > small  # output tokens are priced


def test_unknown_model_or_provider_has_no_price():
    assert cost_usd(ModelConfig(provider="openai", model="my-finetune-xyz-123"), 1_000, 100) is None
    self_hosted = ModelConfig(provider="openai", model="llama-3-8b", base_url="http://127.0.0.1:8000/v1")
    assert cost_usd(self_hosted, 1_000, 100) is None


def test_unknown_tokens_have_no_price():
    assert cost_usd(ModelConfig(), None, 10) is None
    assert cost_usd(ModelConfig(provider="openai", model="gpt-4o-mini"), 10, None) is None
