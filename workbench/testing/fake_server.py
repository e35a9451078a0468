"""The fake OpenAI-compatible endpoint's server: a Starlette app with fixed latency and seeded faults.

    python -m workbench.testing.fake_server --port 8011 --latency 0.2 --fail-rate 0.1 --faults 429,timeout

`workbench.testing.fake_endpoint.LatencyEndpoint` runs it in a subprocess; its answers are made by
`workbench.testing.fake_content`.

Routes
    POST /v1/chat/completions  after `latency` s, a deterministic answer: a span of 3-12 words of the
                               last user message chosen by a sha256 of all the messages (capped at
                               `max_tokens` / `max_completion_tokens` words, then finish_reason
                               "length"); usage: prompt_tokens = int(words·1.3) over all message
                               contents, completion_tokens = answer words. With `response_format`
                               {"type": "json_schema"} the content is a minimal JSON object valid for
                               that schema (ragas' test-set prompts: see fake_ragas); with
                               {"type": "json_object"} it is {"answer": ...}.
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
Hostile kinds (trickle, malformed shapes, huge answers; never in the default cycle) and `require_key`
(401 echoing the presented key): see `workbench.testing.fake_hostile`.
All requests, faulted or not, count in chat_calls / embedding_calls.

The server is one process, one event loop (uvloop + httptools when installed): a request costs well
under a millisecond besides its `asyncio.sleep`, so 64 concurrent requests at L=0.2 take ~0.2-0.3 s
(for the client side see `workbench.testing.fake_endpoint.async_client`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import struct
import time
import uuid
from typing import Any

from workbench.processes import exit_with_parent
from workbench.testing.fake_arrivals import Arrivals
from workbench.testing.fake_content import WORD, content_text, count_tokens, embed_text, make_answer, schema_instance
from workbench.testing.fake_routing import RoutingPlan, logprobs_block
from workbench.testing.fake_sampling import sampled
from workbench.testing.fake_ragas import ragas_instance
from workbench.testing.fake_hostile import SHAPE_KINDS, fault_models, forced_fault, nan_vectors, reshape, trickle
from workbench.testing.fake_state import ALL_FAULT_KINDS, FAULT_KINDS, HOSTILE_KINDS, Config, FaultPlan, Stats

__all__ = ["ALL_FAULT_KINDS", "FAULT_KINDS", "HOSTILE_KINDS", "MODEL_ID", "Config", "FaultPlan", "Stats", "create_app",
           "main"]

MODEL_ID = "latency-endpoint"


# ---------------------------------------------------------------- the ASGI app


def create_app(config: Config | None = None, routing: RoutingPlan | None = None, quality=None):
    """`routing`: planted models for routers and cascades (fake_routing); `quality`: a
    `planted.PlantedQuality` whose answers replace the echoed words (search benchmarks)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    cfg = config or Config()
    stats = Stats()
    arrivals = Arrivals()  # when each chat request came in (GET /arrivals)
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
        if kind == "unauthorized":
            return unauthorized(request)
        if kind == "trickle":
            return StreamingResponse(trickle(json.dumps(good()), cfg.trickle_interval), media_type="application/json")
        await asyncio.sleep(cfg.latency if "chat" in request.url.path else cfg.embed_latency)
        if kind in SHAPE_KINDS:
            body = good()
            reshape(kind, body, cfg.huge_chars)
            return JSONResponse(body)
        if kind == "nan":
            body = good()
            nan_vectors(body, cfg.dim)
            return Response(json.dumps(body), status_code=200, media_type="application/json")  # NaN as Python writes it
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

    def unauthorized(request: Request) -> Response:
        """401 echoing the presented key, as real APIs do."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return error(401, f"Incorrect API key provided: {given}. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")

    def rejected(request: Request) -> Response | None:
        """`unauthorized` unless the key presented is `require_key` (or none is required)."""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return None if cfg.require_key in (None, given) else unauthorized(request)

    async def chat(request: Request) -> Response:
        enter()
        stats.timeline.started()
        try:
            stats.chat_calls += 1
            arrivals.note()
            if (refused := rejected(request)) is not None:
                return refused
            body = await read_json(request)
            if isinstance(body, Response):
                return body
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return error(400, "'messages' must be a non-empty list", "invalid_request_error")
            stats.timeline.saw(body)
            if body.get("stream"):
                return error(400, "streaming is not supported by the latency endpoint", "invalid_request_error")
            model = body.get("model") or MODEL_ID
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            limit = int(limit) if isinstance(limit, (int, float)) else None
            kind = forced_fault(body.get("model"), ALL_FAULT_KINDS) or plan.draw(cfg)
            planted = routing.reply(str(model), messages, float(body.get("temperature") or 0),
                                    body.get("seed")) if routing is not None else None  # fake_routing

            def good() -> dict:
                if quality is not None:
                    answer, finish = quality.reply(messages, model), "stop"
                else:
                    answer, finish = (planted.text, "stop") if planted else make_answer(sampled(messages, body), limit)
                content = answer
                fmt = body.get("response_format")
                if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                    spec = fmt.get("json_schema") or {}
                    schema = spec.get("schema", spec) if isinstance(spec, dict) else {}
                    content = json.dumps(ragas_instance(schema, messages) or schema_instance(schema, answer))
                    finish = "stop"
                elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
                    content = json.dumps({"answer": answer})
                    finish = "stop"
                prompt = count_tokens(" ".join(content_text(m.get("content")) for m in messages
                                               if isinstance(m, dict)))
                completion = len(WORD.findall(answer))
                return {
                    "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": logprobs_block(answer, planted.logprobs) if planted and body.get("logprobs") else None,
                        "finish_reason": finish,
                    }],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                    "system_fingerprint": "latency-endpoint",
                }

            if kind is not None:
                return await fault_response(kind, request, good)
            await asyncio.sleep(planted.latency if planted else cfg.latency)
            result = good()
            stats.tokens_prompt += result["usage"]["prompt_tokens"]
            stats.tokens_completion += result["usage"]["completion_tokens"]
            return JSONResponse(result)
        finally:
            stats.timeline.ended()
            leave()

    async def embeddings(request: Request) -> Response:
        enter()
        try:
            stats.embedding_calls += 1
            if (refused := rejected(request)) is not None:
                return refused
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
            kind = forced_fault(body.get("model"), ALL_FAULT_KINDS) or plan.draw(cfg)

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
        if (refused := rejected(request)) is not None:
            return refused
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "workbench"}
            for name in (MODEL_ID, *fault_models(ALL_FAULT_KINDS), *(routing.models if routing else ()),
                         *(quality.model_names() if quality else ()))]})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats.snapshot())

    async def reset_stats(request: Request) -> Response:
        in_flight = stats.in_flight
        stats.reset()
        arrivals.reset()
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
        Route("/arrivals", lambda request: JSONResponse({"times": arrivals.times}), methods=["GET"]),
        Route("/config", config_route, methods=["GET", "POST"]),
    ])
    app.state.config, app.state.stats = cfg, stats
    return app


# ---------------------------------------------------------------- process entry point


def planted_model(text: str | None):
    if not text:
        return None
    from workbench.testing.planted import PlantedQuality

    return PlantedQuality(**json.loads(text))


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m workbench.testing.fake_server", description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--trickle-interval", type=float, default=0.5, help="seconds between bytes of a 'trickle'")
    parser.add_argument("--huge-chars", type=int, default=20_000_000, help="length of a 'huge' answer")
    parser.add_argument("--require-key", default=None, help="answer 401 (echoing the token) to any other key")
    parser.add_argument("--routing", default=None, help="a RoutingPlan JSON file: planted models (fake_routing)")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--planted", default=None, help='answer from a planted quality model: JSON {"sizes": [..], "seed": n}')
    args = parser.parse_args(argv)
    try:
        cfg = Config(args.latency, args.embed_latency, args.fail_rate, args.faults, args.timeout_sleep,
                     args.retry_after, args.seed, args.dim, args.trickle_interval, args.huge_chars, args.require_key)
    except ValueError as exc:
        parser.error(str(exc))
    if args.parent_pid:
        exit_with_parent(args.parent_pid)
    uvicorn.run(
        create_app(cfg, RoutingPlan.read(args.routing) if args.routing else None, planted_model(args.planted)),
        host=args.host, port=args.port, log_level="warning", access_log=False,
        workers=None, limit_concurrency=4096, backlog=2048, timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
