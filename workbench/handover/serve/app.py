"""The HTTP face of the service (FastAPI): OpenAI-compatible chat, `/answer`, `/feedback`, `/healthz`, `/metrics`.

Every route checks the bearer token when one is set. Bodies are read up to a size limit and parsed here, so
bad input gets one clear 4xx in OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`,
which the `openai` client shows as the exception text) and nothing is traced for it.
"""

from __future__ import annotations

import hmac
import time
import gc
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from workbench.handover.serve.requests import BadRequest, Limits, parse_answer, parse_chat, parse_feedback
from workbench.handover.serve.service import AnswerFailed, Service, UnknownAnswer


def error(status: int, message: str, kind: str, param: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status, **extra}},
                        status_code=status)


class Guard:
    """The bearer token and the request counter, as plain ASGI: Starlette's `BaseHTTPMiddleware` (what
    `@app.middleware` builds) runs every request through a task group and memory streams, milliseconds of CPU
    a request under load (measured with `experiments/benchmarks/serve.py`)."""

    def __init__(self, app, *, token: str | None, metrics) -> None:
        self.app, self.metrics = app, metrics
        self.expected = f"Bearer {token}".encode() if token is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"]
        if self.expected is not None:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                self.metrics.requests.labels(route, "401").inc()
                reply = error(401, "missing or wrong bearer token: send the header `Authorization: Bearer <token>` "
                              "with the token the service was started with", "authentication_error")
                return await reply(scope, receive, send)
        status = 500  # an exception escaping the app is answered 500 by Starlette's outermost middleware

        async def sent(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.requests.labels(route if route in ROUTES else "other", str(status)).inc()


def create_app(service: Service, *, token: str | None = None, limits: Limits = Limits()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        # Everything loaded so far (MLflow, pydantic, the pipeline) lives as long as the process: move it out of
        # the collector's reach, so a full collection walks only per-request garbage, not the whole heap (those
        # pauses were the p95 tail under load).
        gc.collect()
        gc.freeze()
        app.state.ready = True
        yield
        app.state.ready = False  # uvicorn has finished the requests in flight; now the traces are drained
        service.close()

    app = FastAPI(title="workbench serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ready = False
    metrics = service.metrics

    app.add_middleware(Guard, token=token, metrics=metrics)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise BadRequest(f"request body is {int(declared):,} bytes, over the limit of {limits.max_body_bytes:,}; "
                             "send a shorter question", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise BadRequest(f"request body is over the limit of {limits.max_body_bytes:,} bytes; send a shorter "
                                 "question", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        metrics.errors.labels(request.url.path, "bad_request").inc()
        return error(exc.status, str(exc), "invalid_request_error", exc.param)

    @app.exception_handler(UnknownAnswer)
    async def unknown(request: Request, exc: UnknownAnswer):
        metrics.errors.labels(request.url.path, "unknown_answer").inc()
        return error(404, str(exc), "not_found_error", "answer_id")

    @app.exception_handler(AnswerFailed)
    async def failed(request: Request, exc: AnswerFailed):
        return error(502, f"the model could not answer: {exc}", "model_error", answer_id=exc.answer_id)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        question = parse_chat(await body(request), limits)
        answer_id, result = await service.answer(question, "chat")
        usage = _usage(result)
        return JSONResponse({
            "id": answer_id, "object": "chat.completion", "created": int(time.time()), "model": service.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": usage,
        })

    @app.post("/answer")
    async def answer(request: Request):
        question = parse_answer(await body(request), limits)
        answer_id, result = await service.answer(question, "answer")
        return JSONResponse({
            "answer_id": answer_id, "answer": result.answer,
            "contexts": [{"doc_id": c.doc_id, "chunk_id": c.chunk_id, "score": c.score, "rank": c.rank,
                          "text": c.text} for c in result.contexts],
            "usage": _usage(result), "cost_usd": result.cost_usd, "latency": result.latency,
            "config_hash": service.config_hash,
            # a routed export: the named model that answered ("cache": a cache hit) and the cascade's decision
            **({"answered_by": result.answered_by, "routing": result.routing} if result.answered_by is not None else {}),
        })

    @app.post("/feedback", status_code=202)
    async def feedback(request: Request):
        fb = parse_feedback(await body(request), limits)
        await service.feedback(fb)
        return {"status": "accepted", "answer_id": fb.answer_id}

    @app.get("/healthz")
    async def healthz():
        if not app.state.ready:
            return error(503, "starting or stopping", "unavailable")
        return {"status": "ok", "config_hash": service.config_hash, "model": service.model_name,
                "traces_pending": service.log.pending() if service.log else 0}

    @app.get("/metrics")
    async def prometheus():
        if service.log is not None:
            metrics.traces_pending.set(service.log.pending())
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


ROUTES = frozenset({"/v1/chat/completions", "/answer", "/feedback", "/healthz", "/metrics"})


def _usage(result) -> dict:
    p, c = result.prompt_tokens or 0, result.completion_tokens or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
