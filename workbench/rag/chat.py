"""Chat models behind any OpenAI-compatible endpoint (the `openai` package), and their cost.

    from workbench.spec import ModelConfig
    from workbench.rag.local_model import LocalModelServer
    with LocalModelServer() as server:
        model = ChatModel(ModelConfig(), base_url=server.base_url)
        print(model.generate([{"role": "user", "content": "Say hi"}]).text)

Every failure of the endpoint becomes a `ModelError` that says what to check; an API key is read
from the environment variable the config names and never appears in a message (`workbench.scrub`).
`timeout` bounds each whole request (`workbench.rag.deadline`); a 200 whose body is not a usable chat
completion is a `BadResponse` naming what was wrong (`workbench.rag.replies`), which callers retry.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from decimal import Decimal

import httpx
import openai

from workbench.spec import Endpoint, ModelConfig
from workbench.errors import ModelError
from workbench.events import span
from workbench.rag.deadline import AsyncDeadlineClient, DeadlineClient, limits
from workbench.rag.replies import MalformedReply, parse_chat_reply
from workbench.scrub import scrub
from workbench.sync import in_daemon_thread, run_coroutine

KEYLESS_PLACEHOLDER = "not-needed"  # local/keyless servers ignore the key, but the client requires one
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Generation:
    """One completion: the stripped text, the endpoint's token usage and the wall-clock latency."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    model: str
    finish_reason: str | None
    notes: tuple[str, ...] = ()  # what was odd but usable: unknown token counts, a truncated answer
    logprobs: tuple[float, ...] | None = None  # per answer token, when asked for (`ChatModel(..., logprobs=True)`)


def resolve_api_key(endpoint: Endpoint, what: str) -> str:
    """The key for `endpoint`, read from the environment variable it names.

    No `api_key_env` means a keyless server (the local model, Ollama, vLLM without auth): a
    placeholder is returned because the `openai` client insists on some key.
    """
    name = endpoint.api_key_env
    if name is None:
        return KEYLESS_PLACEHOLDER
    value = os.environ.get(name, "").strip()
    if not value:
        raise ModelError(f"set the environment variable {name} (the key for {what})")
    return value


def resolve_endpoint(endpoint: Endpoint, provider: str, what: str, base_url: str | None = None) -> tuple[str, str]:
    """(base_url, key) for a chat model, judge or embedder: one rule for all three.

    `base_url` (the running local server's URL) wins over the config's; no URL means the local
    server is not started yet (an error) or OpenAI itself, which always needs a key — OPENAI_API_KEY
    unless the config names another variable.
    """
    url = base_url or endpoint.base_url
    if url is None:
        if provider == "local":
            raise ModelError(
                f"the local {what} has no base_url until its server runs: start a "
                "workbench.rag.local_model.LocalModelServer and pass its base_url"
            )
        url = OPENAI_BASE_URL
    if endpoint.api_key_env is None and url.rstrip("/") == OPENAI_BASE_URL:
        endpoint = endpoint.model_copy(update={"api_key_env": "OPENAI_API_KEY"})
    return url, resolve_api_key(endpoint, f"{what} at {url}")


def scrub_error(text: str, key: str | None) -> str:
    """An error message with the client's key (not the keyless placeholder) and key-shaped text masked."""
    return scrub(text, [key] if key and key != KEYLESS_PLACEHOLDER else [])


def _server_message(exc: openai.APIStatusError, limit: int = 300) -> str:
    """The endpoint's own explanation, e.g. llama.cpp's "Requested tokens ... exceed context window"
    (at most `limit` characters: an error page can be megabytes)."""
    text = str(exc.message or exc)
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        for candidate in (error.get("message") if isinstance(error, dict) else error, body.get("message"),
                          body.get("detail")):
            if candidate:
                text = str(candidate)
                break
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_api_error(exc: openai.APIError, *, where: str, what: str, key: str | None,
                       api_key_env: str | None) -> str:
    """One line saying why a request to an OpenAI-compatible endpoint failed, for callers outside
    `ChatModel` (the judge): the server's own explanation when it gave one, the key never shown.

    `where` is the base_url, `what` names the model (e.g. "judge model 'gpt-4.1-mini'").
    """
    if isinstance(exc, openai.APITimeoutError):
        msg = f"the request to {where} timed out ({what})"
    elif isinstance(exc, openai.APIConnectionError):
        msg = f"cannot connect to {where} ({what}): check that the server is running and the base_url"
    elif isinstance(exc, openai.AuthenticationError):
        msg = (f"{where} rejected the API key for {what}: check the environment variable "
               f"{api_key_env or '(none configured: set api_key_env)'}")
    elif isinstance(exc, openai.APIStatusError):
        msg = f"{where} failed for {what} (HTTP {exc.status_code}): {_server_message(exc)}"
    else:
        msg = f"{where} failed for {what}: {exc}"
    return scrub_error(msg, key)


class BadResponse(ModelError):
    """The endpoint answered 200 with something unusable (malformed JSON, no choices): worth a retry."""


class ChatModel:
    """A chat model at an OpenAI-compatible endpoint, configured by a `ModelConfig`."""

    def __init__(
        self,
        cfg: ModelConfig,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = 2,
        max_connections: int = 64,
        logprobs: bool = False,
    ) -> None:
        self.cfg = cfg
        # token log-probs for a cascade's signal; llama.cpp's server sends them only with top_logprobs >= 1
        self.extra_params: dict = {"logprobs": True, "top_logprobs": 1} if logprobs else {}
        self.base_url, self._key = resolve_endpoint(cfg, cfg.provider, f"model {cfg.model!r}", base_url)
        # The client's own retries: exponential backoff with jitter on 408/409/429/5xx, connection errors
        # and timeouts, honouring Retry-After.
        self._async_args = {"timeout": timeout, "max_retries": max_retries, "max_connections": max_connections}
        self._client: openai.OpenAI | None = None
        self._client_lock = threading.Lock()  # a service may answer on several threads
        self._async_client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.OpenAI:
        """The sync client (`generate`: `workbench answer`, `load_pipeline`), made on first use: httpx's sync
        transport imports httpcore (~0.1 s of CPU), which a sweep, all async, never needs."""
        with self._client_lock:
            if self._client is None:
                timeout = self._async_args["timeout"]
                self._client = openai.OpenAI(base_url=self.base_url, api_key=self._key, timeout=timeout,
                                             max_retries=self._async_args["max_retries"],
                                             http_client=DeadlineClient(timeout))
            return self._client

    def close(self) -> None:
        """Close the sync client, if one was made (the async one: `aclose`, in its event loop)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """Created on first use, inside the event loop that will use it."""
        if self._async_client is None:
            # httpx's default pool (100 connections, 20 keep-alive) would cap or churn high concurrency
            self._async_client = self._new_async_client(limits=limits(self._async_args["max_connections"]))
        return self._async_client

    def _new_async_client(self, **http) -> openai.AsyncOpenAI:
        a = self._async_args
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key, timeout=a["timeout"],
                                  max_retries=a["max_retries"], http_client=AsyncDeadlineClient(a["timeout"], **http))

    def __repr__(self) -> str:  # never shows the key
        return f"ChatModel(model={self.cfg.model!r}, base_url={self.base_url!r})"

    def check(self) -> None:
        """Fail fast before a sweep: endpoint reachable, key accepted, model served (GET /models, no tokens)."""
        try:
            listed = run_coroutine(self._listed_models(), thread_name="workbench-check")
        except openai.NotFoundError:
            return  # some OpenAI-compatible servers have no /models; the first call will tell
        except openai.APIError as exc:
            raise self._model_error(exc) from None
        except (ValueError, AttributeError, TypeError, KeyError) as exc:  # not JSON, or not a list of models
            raise BadResponse(scrub_error(f"{self.base_url} sent a malformed /models response: {exc}", self._key)) from None
        model = self.cfg.model
        served = any(m == model or m.startswith(model + ":") for m in listed)  # Ollama lists "name:tag"
        if listed and self.cfg.provider != "local" and not served:
            shown = ", ".join(sorted(listed)[:10]) + (" …" if len(listed) > 10 else "")
            raise ModelError(f"{self.base_url} does not serve model {self.cfg.model!r}; it lists: {shown}")

    async def _listed_models(self) -> list[str]:
        """GET /models through a throwaway async client: the sweep's own request path (aiohttp), not the sync
        one, and the client's auth, retries and status errors without `client.models`, whose first use imports
        every openai resource module (~0.2 s of CPU on the way to a sweep's first call)."""
        client = self._new_async_client()
        try:
            raw = await client.get("/models", cast_to=httpx.Response)
            return [m["id"] for m in raw.json()["data"]]
        finally:
            await client.close()

    def request_params(self, messages: list[dict]) -> dict:
        cfg = self.cfg
        params: dict = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature,
                        "max_tokens": cfg.max_tokens}
        if cfg.top_p is not None:
            params["top_p"] = cfg.top_p
        if cfg.seed is not None:
            params["seed"] = cfg.seed
        return params | self.extra_params

    def generate(self, messages: list[dict], **extra) -> Generation:
        """One chat completion. `extra` goes to the endpoint as is (e.g. response_format)."""
        params = self.request_params(messages) | extra
        start = time.perf_counter()
        try:
            raw = self.client.chat.completions.with_raw_response.create(**params)
        except openai.APIError as exc:
            raise self._model_error(exc) from None
        return self._generation(raw.http_response.content, time.perf_counter() - start)

    async def agenerate(self, messages: list[dict], **extra) -> Generation:
        """The same call on the async client (the sweep runs many of these concurrently)."""
        params = self.request_params(messages) | extra
        start = time.perf_counter()
        try:
            with span("generate", model=self.cfg.model):
                # the client's own request path (auth, retries, status errors) without `create`'s walk of the
                # params against its TypedDicts, ~1 ms of CPU a call (a service's per-request cost); we read
                # the raw bytes ourselves anyway (`_generation`)
                raw = await self.async_client.post("/chat/completions", body=params, cast_to=httpx.Response)
        except openai.APIError as exc:
            raise self._model_error(exc) from None
        return self._generation(raw.content, time.perf_counter() - start)

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.close()
            self._async_client = None

    def _generation(self, body: bytes, latency: float) -> Generation:
        """The checked reply (raw bytes: the openai objects are built unvalidated) as a Generation."""
        try:
            reply = parse_chat_reply(body, self.cfg.max_tokens)
        except MalformedReply as exc:
            raise BadResponse(scrub_error(
                f"{self.base_url} sent a malformed reply for model {self.cfg.model!r}: {exc}", self._key)) from None
        return Generation(
            text=reply.text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            latency_s=latency,
            model=reply.model or self.cfg.model,
            finish_reason=reply.finish_reason,
            notes=tuple(scrub_error(n, self._key) for n in reply.notes),
            logprobs=reply.logprobs,
        )

    def _model_error(self, exc: openai.APIError) -> ModelError:
        where = f"{self.base_url}"
        model = self.cfg.model
        if isinstance(exc, openai.APIResponseValidationError):
            return BadResponse(scrub_error(f"{where} sent a response that does not parse for model {model!r}: {exc}", self._key))
        if isinstance(exc, openai.APITimeoutError):
            msg = (f"the request to {where} timed out after {self._async_args['timeout']:g} s (model {model!r}, "
                   "execution.timeout_s bounds each whole request); check that the server is up and not "
                   "overloaded (the local server answers one request at a time)")
        elif isinstance(exc, openai.APIConnectionError):
            msg = (f"cannot connect to {where} (model {model!r}): check that the server is running and the "
                   "base_url (host, port, /v1 suffix) is right")
        elif isinstance(exc, openai.AuthenticationError):
            if self.cfg.api_key_env:
                msg = (f"{where} rejected the API key for model {model!r}: check the environment variable "
                       f"{self.cfg.api_key_env}")
            else:
                msg = (f"{where} needs an API key for model {model!r}: set api_key_env to the name of the "
                       "environment variable that holds it")
            return ModelError(scrub_error(msg, self._key))  # never the server's text: it may echo the key
        elif isinstance(exc, openai.PermissionDeniedError):
            msg = (f"{where} refused model {model!r} (permission denied): check that the key in "
                   f"{self.cfg.api_key_env or '(no api_key_env)'} may use it: {_server_message(exc)}")
        elif isinstance(exc, openai.NotFoundError):
            msg = (f"{where} has no model {model!r} (or the base_url path is wrong): check the model name "
                   f"and base_url: {_server_message(exc)}")
        elif isinstance(exc, openai.BadRequestError):
            msg = (f"{where} rejected the request for model {model!r} (e.g. prompt longer than the context "
                   f"window, or an unsupported parameter): {_server_message(exc)}")
        elif isinstance(exc, openai.RateLimitError):
            msg = f"{where} rate-limited model {model!r} after retries: lower the concurrency or wait: {_server_message(exc)}"
        elif isinstance(exc, openai.APIStatusError):
            msg = f"{where} failed for model {model!r} (HTTP {exc.status_code}): {_server_message(exc)}"
        else:
            msg = f"{where} failed for model {model!r}: {exc}"
        return ModelError(scrub_error(msg, self._key))


def cost_usd(cfg: ModelConfig, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """USD cost of one call: configured prices, else 0 for the local model, else genai-prices.

    None (not 0) when the tokens are unknown or genai-prices does not know the model/provider —
    a missing price must not look free. A `base_url` that matches no provider genai-prices knows
    (a self-hosted vLLM/Ollama) gives None: configure price_*_per_mtok for it.
    """
    if prompt_tokens is None or completion_tokens is None:
        return None
    if cfg.price_input_per_mtok is not None and cfg.price_output_per_mtok is not None:
        return (prompt_tokens * cfg.price_input_per_mtok + completion_tokens * cfg.price_output_per_mtok) / 1_000_000
    if cfg.provider == "local":
        return 0.0
    import genai_prices

    try:
        price = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens),
            model_ref=cfg.model,
            provider_api_url=cfg.base_url or OPENAI_BASE_URL,
        )
    except LookupError:
        return None
    total = price.total_price
    return float(total) if isinstance(total, Decimal | int | float) else None


def warm_prices(cfgs: list[ModelConfig]) -> Future | None:
    """Price one call of each model that genai-prices prices, on a daemon thread: its import and price table
    (~50-100 ms of CPU) load there, not on the event loop as the answers arrive. The future is done when they
    have loaded; None when no model is priced by genai-prices."""
    todo = [c for c in cfgs if c.provider != "local" and c.price_input_per_mtok is None]
    if not todo:
        return None
    return in_daemon_thread(lambda: [cost_usd(c, 1, 1) for c in todo], "workbench-warm-prices")
