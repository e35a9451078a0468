"""A fake OpenAI-compatible endpoint with a fixed per-call latency and optional fault injection.

For speed benchmarks (a sweep against a known per-call latency L must take ~⌈calls/concurrency⌉·L)
and reliability tests (429 / 500 / timeouts / malformed / empty answers over real HTTP):

    python -m workbench.testing.fake_endpoint --port 8011 --latency 0.2 --fail-rate 0.1 --faults 429,timeout

    from workbench.testing.fake_endpoint import LatencyEndpoint
    with LatencyEndpoint(latency=0.2) as endpoint:
        client = openai.OpenAI(base_url=endpoint.base_url, api_key="x")
        ...
        endpoint.stats()["max_in_flight"]

Routes
    POST /v1/chat/completions  after `latency` s, a deterministic answer: a span of 3-12 words of the
                               last user message chosen by a sha256 of all the messages (capped at
                               `max_tokens` / `max_completion_tokens` words, then finish_reason
                               "length"); usage: prompt_tokens = int(words·1.3) over all message
                               contents, completion_tokens = answer words. With `response_format`
                               {"type": "json_schema"} the content is a minimal JSON object valid for
                               that schema; with {"type": "json_object"} it is {"answer": ...}.
    POST /v1/embeddings        after `embed_latency` s, unit vectors of `dim` floats seeded by the
                               sha256 of each input (honours encoding_format "base64", which the
                               openai client asks for by default).
    GET  /v1/models            one model, "latency-endpoint".
    GET  /stats                counters (see `Stats.snapshot`); POST /stats/reset zeroes them and
                               re-seeds the fault RNG, so a run after a reset is reproducible.
    POST /config               partial update of latency, embed_latency, fail_rate, faults,
                               timeout_sleep, retry_after, seed, dim (answers the new config).

Faults: each chat / embeddings request draws u from random.Random(seed) in arrival order and fails
when u < fail_rate; the kind cycles round-robin through `faults`. So for a given seed and request
order the faulted requests and their kinds are fixed; with fail_rate=1.0 every request fails.
    429        at once: status 429, `Retry-After: <retry_after>`, OpenAI-style error JSON.
    500        at once: status 500, error JSON.
    timeout    sleeps `timeout_sleep` s, then answers normally (the client times out first; the
               sleep ends early when the client disconnects, so it does not hold `in_flight`).
    malformed  after `latency`: status 200, Content-Type application/json, a truncated JSON body.
    empty      after `latency`: status 200, valid JSON with `choices: []` (embeddings: `data: []`).
All requests, faulted or not, count in chat_calls / embedding_calls.

The server is one process, one event loop (uvloop + httptools when installed): a request costs well
under a millisecond besides its `asyncio.sleep`, so 64 concurrent requests at L=0.2 take ~0.2-0.3 s.
Client side, openai 1.x's default httpx pool (max_connections=1000, max_keepalive_connections=100)
is large enough, but bursts on a *warm* async pool are partly serialised by httpcore 1.0.9 (see
`async_client`, which turns keep-alive off for that reason).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import hashlib
import json
import math
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

MODEL_ID = "latency-endpoint"
FAULT_KINDS = ("429", "500", "timeout", "malformed", "empty")
_WORD = re.compile(r"\S+")


# ---------------------------------------------------------------- deterministic content


def _sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).digest()


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return str(content)


def count_tokens(text: str) -> int:
    """A deterministic token estimate: int(words · 1.3) (at least 1 for non-empty text)."""
    words = len(_WORD.findall(text))
    return max(1, int(words * 1.3)) if words else 0


def make_answer(messages: list[dict], max_tokens: int | None = None) -> tuple[str, str]:
    """(answer, finish_reason): 3-12 consecutive words of the last user message, picked by a hash
    of all the messages; at most `max_tokens` words (then finish_reason "length")."""
    key = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    h = int.from_bytes(_sha(key)[:8], "big")
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
                     messages[-1] if messages else {})
    words = _WORD.findall(_content_text(last_user.get("content") if isinstance(last_user, dict) else ""))
    if not words:
        words = ["OK"]
    n = min(3 + h % 10, len(words))
    start = (h >> 16) % (len(words) - n + 1)
    span = words[start:start + n]
    finish = "stop"
    if max_tokens is not None and max_tokens >= 0 and len(span) > max_tokens:
        span, finish = span[:max_tokens], "length"
    return " ".join(span), finish


def embed_text(text: str, dim: int) -> list[float]:
    """A unit vector of `dim` floats, seeded by sha256(text) (identical on every platform)."""
    seed = _sha(text)
    out: list[float] = []
    counter = 0
    while len(out) < dim:  # Box-Muller on a sha256 stream: no numpy needed, fully deterministic
        block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
        for i in range(0, 32, 8):
            a, b = struct.unpack(">II", block[i:i + 8])
            u1 = (a + 1) / 4294967297.0
            u2 = b / 4294967296.0
            r = math.sqrt(-2.0 * math.log(u1))
            out.append(r * math.cos(2 * math.pi * u2))
            out.append(r * math.sin(2 * math.pi * u2))
    out = out[:dim]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]


def _resolve_ref(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def schema_instance(schema: Any, text: str, root: dict | None = None, depth: int = 0) -> Any:
    """A minimal value valid for a (simple) JSON schema: const / enum / default first, then type
    defaults: strings from `text`, numbers and integers 1 (or `minimum`), booleans true, null,
    arrays of max(minItems, 1) items, objects with every listed property (required ones at least)."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if not isinstance(schema, dict) or depth > 12:
        return text
    if "$ref" in schema:
        return schema_instance({**_resolve_ref(schema["$ref"], root),
                                **{k: v for k, v in schema.items() if k != "$ref"}}, text, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            return schema_instance((options or schema[key])[0], text, root, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            part = _resolve_ref(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = merged.get("required", []) + list(part.get("required", []))
        return schema_instance(merged, text, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        names = list(props) + [r for r in schema.get("required", []) if r not in props]
        return {name: schema_instance(props.get(name, {"type": "string"}), text, root, depth + 1) for name in names}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        item = schema.get("items", {"type": "string"})
        if isinstance(item, list):  # tuple form
            return [schema_instance(s, text, root, depth + 1) for s in item]
        return [schema_instance(item, text, root, depth + 1) for _ in range(n)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 1 if low is None or low < 1 else math.ceil(low) + (1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = math.floor(high) if kind == "integer" else high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = text or "x"  # string
    if "maxLength" in schema:
        value = value[: int(schema["maxLength"])]
    if len(value) < int(schema.get("minLength", 0)):
        value = value.ljust(int(schema["minLength"]), "x")
    return value


# ---------------------------------------------------------------- server state


class Config:
    FIELDS = ("latency", "embed_latency", "fail_rate", "faults", "timeout_sleep", "retry_after", "seed", "dim")

    def __init__(self, latency=0.2, embed_latency=0.0, fail_rate=0.0, faults=FAULT_KINDS,
                 timeout_sleep=30.0, retry_after=1.0, seed=0, dim=384):
        self.latency = float(latency)
        self.embed_latency = float(embed_latency)
        self.fail_rate = float(fail_rate)
        self.faults = _parse_faults(faults)
        self.timeout_sleep = float(timeout_sleep)
        self.retry_after = float(retry_after)
        self.seed = int(seed)
        self.dim = int(dim)

    def update(self, values: dict) -> None:
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; known: {list(self.FIELDS)}")
        merged = {**self.as_dict(), **values}
        self.__init__(**merged)

    def as_dict(self) -> dict:
        return {name: (list(v) if isinstance(v := getattr(self, name), tuple) else v) for name in self.FIELDS}


def _parse_faults(faults) -> tuple[str, ...]:
    if isinstance(faults, str):
        faults = [f for f in faults.split(",")]
    kinds = tuple(str(f).strip().lower() for f in faults if str(f).strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad:
        raise ValueError(f"unknown fault kinds {bad}; choose among {','.join(FAULT_KINDS)}")
    return kinds


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.chat_calls = 0
        self.embedding_calls = 0
        self.embedding_inputs = 0
        self.faults_injected = {kind: 0 for kind in FAULT_KINDS}
        self.in_flight = 0
        self.max_in_flight = 0
        self.tokens_prompt = 0
        self.tokens_completion = 0
        self.tokens_embedding = 0

    def snapshot(self) -> dict:
        return {
            "chat_calls": self.chat_calls,                  # every chat request, faulted or not
            "embedding_calls": self.embedding_calls,        # every embeddings request, faulted or not
            "embedding_inputs": self.embedding_inputs,      # texts embedded (non-faulted requests)
            "faults_injected": dict(self.faults_injected),  # by kind
            "faults_total": sum(self.faults_injected.values()),
            "in_flight": self.in_flight,                    # chat/embeddings requests in progress now
            "max_in_flight": self.max_in_flight,            # peak of in_flight since the last reset
            "tokens_prompt": self.tokens_prompt,            # chat prompt tokens (non-faulted requests)
            "tokens_completion": self.tokens_completion,    # chat completion tokens (non-faulted requests)
            "tokens_embedding": self.tokens_embedding,      # embeddings input tokens (non-faulted)
        }


class FaultPlan:
    """Seeded, arrival-ordered decisions: fail with probability fail_rate, kinds round-robin."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.index = 0

    def draw(self, cfg: Config) -> str | None:
        if not cfg.faults or cfg.fail_rate <= 0:
            return None
        if self.rng.random() >= cfg.fail_rate:
            return None
        kind = cfg.faults[self.index % len(cfg.faults)]
        self.index += 1
        return kind


# ---------------------------------------------------------------- the ASGI app


def create_app(config: Config | None = None):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    cfg = config or Config()
    stats = Stats()
    plan = FaultPlan(cfg.seed)

    def error(status: int, message: str, kind: str, code: str | None = None, headers=None) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def read_json(request: Request) -> dict | JSONResponse:
        try:
            body = await request.json()
        except Exception:
            return error(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return error(400, "request body must be a JSON object", "invalid_request_error")
        return body

    async def sleep_unless_disconnected(request: Request, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
            if await request.is_disconnected():
                return

    async def fault_response(kind: str, request: Request, good) -> Response:
        """The faulted answer of kind `kind`; `good()` builds the normal JSON body (for timeout/empty)."""
        stats.faults_injected[kind] += 1
        if kind == "429":
            after = cfg.retry_after
            header = str(int(after)) if after == int(after) else f"{after:g}"
            return error(429, "Rate limit reached (injected fault).", "requests", "rate_limit_exceeded",
                         headers={"Retry-After": header})
        if kind == "500":
            return error(500, "The server had an error while processing your request (injected fault).",
                         "server_error", "internal_error")
        if kind == "timeout":
            await sleep_unless_disconnected(request, cfg.timeout_sleep)
            return JSONResponse(good())
        await asyncio.sleep(cfg.latency if "chat" in request.url.path else cfg.embed_latency)
        if kind == "malformed":
            text = json.dumps(good())
            return Response(text[: max(1, len(text) // 2)], status_code=200, media_type="application/json")
        body = good()
        body["choices" if "choices" in body else "data"] = []
        return JSONResponse(body)

    def enter() -> None:
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)

    def leave() -> None:
        stats.in_flight -= 1

    async def chat(request: Request) -> Response:
        enter()
        try:
            stats.chat_calls += 1
            body = await read_json(request)
            if isinstance(body, Response):
                return body
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return error(400, "'messages' must be a non-empty list", "invalid_request_error")
            if body.get("stream"):
                return error(400, "streaming is not supported by the latency endpoint", "invalid_request_error")
            model = body.get("model") or MODEL_ID
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            limit = int(limit) if isinstance(limit, (int, float)) else None
            kind = plan.draw(cfg)

            def good() -> dict:
                answer, finish = make_answer(messages, limit)
                content = answer
                fmt = body.get("response_format")
                if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                    spec = fmt.get("json_schema") or {}
                    schema = spec.get("schema", spec) if isinstance(spec, dict) else {}
                    content = json.dumps(schema_instance(schema, answer))
                    finish = "stop"
                elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
                    content = json.dumps({"answer": answer})
                    finish = "stop"
                prompt = count_tokens(" ".join(_content_text(m.get("content")) for m in messages
                                               if isinstance(m, dict)))
                completion = len(_WORD.findall(answer))
                return {
                    "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                    "system_fingerprint": "latency-endpoint",
                }

            if kind is not None:
                return await fault_response(kind, request, good)
            await asyncio.sleep(cfg.latency)
            result = good()
            stats.tokens_prompt += result["usage"]["prompt_tokens"]
            stats.tokens_completion += result["usage"]["completion_tokens"]
            return JSONResponse(result)
        finally:
            leave()

    async def embeddings(request: Request) -> Response:
        enter()
        try:
            stats.embedding_calls += 1
            body = await read_json(request)
            if isinstance(body, Response):
                return body
            raw = body.get("input")
            if isinstance(raw, str):
                texts = [raw]
            elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
                texts = [" ".join(map(str, raw))]  # one input given as token ids
            elif isinstance(raw, list) and raw:
                texts = [x if isinstance(x, str) else " ".join(map(str, x)) if isinstance(x, list) else str(x)
                         for x in raw]
            else:
                return error(400, "'input' must be a string or a non-empty list", "invalid_request_error")
            dim = int(body.get("dimensions") or cfg.dim)
            as_base64 = body.get("encoding_format") == "base64"
            model = body.get("model") or MODEL_ID
            kind = plan.draw(cfg)

            def good() -> dict:
                data = []
                for i, text in enumerate(texts):
                    vector = embed_text(text, dim)
                    value: Any = (base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode("ascii")
                                  if as_base64 else vector)
                    data.append({"object": "embedding", "index": i, "embedding": value})
                tokens = sum(count_tokens(t) for t in texts)
                return {"object": "list", "data": data, "model": model,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

            if kind is not None:
                return await fault_response(kind, request, good)
            if cfg.embed_latency > 0:
                await asyncio.sleep(cfg.embed_latency)
            result = good()
            stats.embedding_inputs += len(texts)
            stats.tokens_embedding += result["usage"]["prompt_tokens"]
            return JSONResponse(result)
        finally:
            leave()

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "workbench"}]})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats.snapshot())

    async def reset_stats(request: Request) -> Response:
        in_flight = stats.in_flight
        stats.reset()
        stats.in_flight = in_flight  # requests still running will leave() later
        plan.reseed(cfg.seed)
        return JSONResponse(stats.snapshot())

    async def config_route(request: Request) -> Response:
        if request.method == "POST":
            body = await read_json(request)
            if isinstance(body, Response):
                return body
            try:
                cfg.update(body)
            except (ValueError, TypeError) as exc:
                return error(400, str(exc), "invalid_request_error")
            if "seed" in body:
                plan.reseed(cfg.seed)
        return JSONResponse(cfg.as_dict())

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/stats", get_stats, methods=["GET"]),
        Route("/stats/reset", reset_stats, methods=["POST"]),
        Route("/config", config_route, methods=["GET", "POST"]),
    ])
    app.state.config, app.state.stats = cfg, stats
    return app


# ---------------------------------------------------------------- process entry point


def _exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """End this process once `parent_pid` has gone (covers a parent killed with SIGKILL)."""
    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m workbench.testing.fake_endpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per chat completion")
    parser.add_argument("--embed-latency", type=float, default=0.0, help="seconds per embeddings request")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability a request is faulted")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument("--timeout-sleep", type=float, default=30.0, help="seconds a 'timeout' fault sleeps")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of a '429' fault")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=384, help="embedding dimension")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    try:
        cfg = Config(args.latency, args.embed_latency, args.fail_rate, args.faults, args.timeout_sleep,
                     args.retry_after, args.seed, args.dim)
    except ValueError as exc:
        parser.error(str(exc))
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    uvicorn.run(
        create_app(cfg), host=args.host, port=args.port, log_level="warning", access_log=False,
        workers=None, limit_concurrency=4096, backlog=2048, timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )


# ---------------------------------------------------------------- subprocess helper


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LatencyEndpoint:
    """`python -m workbench.testing.fake_endpoint` in a subprocess on 127.0.0.1; a context manager.

    `start()` waits until /v1/models answers; `stop()` sends SIGTERM, then SIGKILL after
    `grace` seconds; it is idempotent and also runs at interpreter exit.
    """

    def __init__(self, latency: float = 0.2, *, embed_latency: float = 0.0, fail_rate: float = 0.0,
                 faults=FAULT_KINDS, timeout_sleep: float = 30.0, retry_after: float = 1.0,
                 seed: int = 0, dim: int = 384, port: int | None = None,
                 startup_timeout: float = 30.0, grace: float = 5.0, log_path: str | Path | None = None) -> None:
        self.config = Config(latency, embed_latency, fail_rate, faults, timeout_sleep, retry_after, seed, dim)
        self.port = port
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the latency endpoint is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LatencyEndpoint:
        if self.alive():
            return self
        self.stop()
        if self.port is None:
            self.port = _free_port()
        c = self.config
        cmd = [sys.executable, "-m", "workbench.testing.fake_endpoint", "--port", str(self.port),
               "--latency", repr(c.latency), "--embed-latency", repr(c.embed_latency),
               "--fail-rate", repr(c.fail_rate), "--faults", ",".join(c.faults),
               "--timeout-sleep", repr(c.timeout_sleep), "--retry-after", repr(c.retry_after),
               "--seed", str(c.seed), "--dim", str(c.dim), "--parent-pid", str(os.getpid())]
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a+b")
        else:
            self._log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block the server
        self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                         env=env)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = self.base_url + "/models"
        while True:
            if self._process.poll() is not None:
                self._log.flush()
                self._log.seek(0)
                output = self._log.read().decode("utf-8", "replace")
                raise RuntimeError(f"the latency endpoint exited at start (code {self._process.returncode}):\n"
                                   f"{output[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the latency endpoint did not answer {url} within {self.startup_timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=self.grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        atexit.unregister(self.stop)

    def _request(self, method: str, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(self.root_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._request("GET", "/stats")

    def reset_stats(self) -> dict:
        return self._request("POST", "/stats/reset")

    def configure(self, **changes) -> dict:
        """Change latency / fail_rate / faults / ... of the running server (no restart)."""
        if "faults" in changes and not isinstance(changes["faults"], str):
            changes["faults"] = list(changes["faults"])
        result = self._request("POST", "/config", changes)
        self.config.update({k: v for k, v in changes.items()})
        return result

    def __enter__(self) -> LatencyEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.alive() else "stopped"
        return f"LatencyEndpoint({state}, latency={self.config.latency}, fail_rate={self.config.fail_rate})"


def _limits(max_connections: int, keepalive: bool):
    import httpx

    return httpx.Limits(max_connections=max_connections,
                        max_keepalive_connections=max_connections if keepalive else 0)


def async_client(base_url: str, *, timeout: float = 60.0, max_retries: int = 0,
                 max_connections: int = 1000, keepalive: bool = False):
    """An openai.AsyncOpenAI for bursts of concurrent requests against the endpoint.

    keepalive=False (max_keepalive_connections=0) opens a fresh localhost connection per request.
    With pooled keep-alive connections httpcore 1.0.9's pool hands one idle HTTP/1.1 connection to
    several queued requests in the same pass; all but one get ConnectionNotAvailable and re-queue
    (encode/httpcore#1110 review; pydantic/httpx2#1075), which partly serialises a burst on a warm
    pool: 64 requests at L=0.2 took ~0.85-1.9 s with the default client, ~0.2-0.5 s without
    keep-alive. openai's default pool (max_connections=1000, max_keepalive_connections=100) is
    otherwise large enough up to 1000 concurrent requests.
    """
    import openai

    return openai.AsyncOpenAI(base_url=base_url, api_key="latency-endpoint", timeout=timeout, max_retries=max_retries,
                              http_client=openai.DefaultAsyncHttpxClient(limits=_limits(max_connections, keepalive),
                                                                         timeout=timeout))


def sync_client(base_url: str, *, timeout: float = 60.0, max_retries: int = 0,
                max_connections: int = 1000, keepalive: bool = True):
    """An openai.OpenAI to share between threads (see `async_client` for the keep-alive caveat;
    with 16 threads the sync pool stayed within ~5-9 % of the ideal time with keep-alive on)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key="latency-endpoint", timeout=timeout, max_retries=max_retries,
                         http_client=openai.DefaultHttpxClient(limits=_limits(max_connections, keepalive),
                                                               timeout=timeout))


if __name__ == "__main__":
    main()
