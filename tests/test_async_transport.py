"""The async model clients send through aiohttp (httpx-aiohttp), except where the environment names a proxy:
then httpx's own transports, which honour HTTP(S)_PROXY and NO_PROXY (a custom transport would bypass them)."""

from __future__ import annotations

import asyncio

import httpx

from workbench.rag.chat import ChatModel
from workbench.rag.deadline import AsyncDeadlineClient, limits
from workbench.spec import ModelConfig
from workbench.testing.fake_endpoint import LatencyEndpoint

ASK = [{"role": "user", "content": "Who won Super Bowl 50?"}]


def test_calls_go_through_aiohttp_and_answer(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert type(AsyncDeadlineClient(5, limits=limits(4))._transport).__name__ == "AiohttpTransport"
    with LatencyEndpoint(latency=0.01) as ep:
        model = ChatModel(ModelConfig(provider="openai", model="m", base_url=ep.base_url, max_tokens=8))

        async def go():
            try:
                return await asyncio.gather(*(model.agenerate(ASK) for _ in range(6)))
            finally:
                await model.aclose()

        answers = asyncio.run(go())
        assert ep.stats()["chat_calls"] == 6 and all(a.text for a in answers)


def test_a_proxy_in_the_environment_keeps_httpx_transports(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = AsyncDeadlineClient(5, limits=limits(4))
    assert type(client._transport).__name__ == "AsyncHTTPTransport"
    assert any(pattern.matches(httpx.URL("https://api.openai.com/v1")) and transport is not None
               for pattern, transport in client._mounts.items())  # https goes through the proxy
