"""A served request as an MLflow trace, and the feedback on it as assessments, written off the request path.

The service hands each finished request to `serve_writer.ServeWriter.log_request` (a queue put, microseconds);
`ServeLog`, in a helper process, turns it into a trace with `retrieve` and `generate` spans from the measured
timings (the same span machinery as the sweep's question traces, `trace_batch.py`) and stores traces in
batches. Feedback goes through the same queue, so it is written after the trace it refers to is stored:
`mlflow.log_feedback` for a rating, `mlflow.log_expectation` for a corrected answer. A stop message drains the
queue first: nothing accepted is lost on a graceful shutdown.

What the monitor and the harvest read back without loading spans is in the trace's tags (`workbench.*`): answer
id, latencies, tokens, cost, top retrieval score, config hash, sweep id, status.
"""

from __future__ import annotations

import json
import queue
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TEXT_CHARS = 2000  # contexts in a trace are for looking; the doc ids and scores are kept in full
BATCH = 50
INTERVAL_S = 0.25  # the longest a finished request waits before its trace is stored
KNOWN_IDS = 200_000  # answer ids remembered in memory for feedback (older ones are looked up in MLflow)
SOURCE_ID = "workbench-serve"
TAG = "workbench."  # every tag of ours starts so


@dataclass(frozen=True)
class ServedRequest:
    """What one request did, measured by the service (no MLflow types: the service stays free of them)."""

    answer_id: str
    route: str
    question: str
    started_ns: int
    total_s: float
    retrieve_s: float = 0.0
    generate_s: float = 0.0
    answer: str | None = None
    messages: list[dict] | None = None
    contexts: list[dict] = field(default_factory=list)  # chunk_id, doc_id, text, score, rank
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    error: str | None = None
    # a routed export (router, cascade, response cache): which named model answered, the cascade's decision and
    # every call it made (model, tokens, cost, latency)
    answered_by: str | None = None
    escalated: bool | None = None
    calls: list[dict] | None = None


@dataclass(frozen=True)
class UserFeedback:
    answer_id: str
    rating: str | int | None = None  # "up" / "down" or 1..5
    correction: str | None = None
    comment: str | None = None
    user: str | None = None


def negative(rating: str | int | None) -> bool | None:
    """A down-vote or a rating of 1-2 is negative; None: no rating given."""
    if rating is None:
        return None
    return rating == "down" if isinstance(rating, str) else int(rating) <= 2


class ServeLog:
    """The deployment's experiment and the writer of its traces and feedback (run in the helper process that
    `serve_writer.ServeWriter` starts: MLflow's pure-Python span building never takes the interpreter lock
    from the service's event loop)."""

    def __init__(self, tracking_uri: str, deployment: str, tags: dict[str, str], *, redact: bool = True):
        import mlflow

        from workbench.tracking.store import (check_sqlite_store, create_sqlite_store_atomically, prepare_local_store,
                                              sqlite_path, store_lock)
        from workbench.tracking.trace_batch import TraceBatch, is_database_uri

        self.mlflow = mlflow
        self.uri, self.deployment, self.tags, self.redact = tracking_uri, deployment, dict(tags), redact
        if sqlite_path(tracking_uri) is not None:  # a new store: created whole, in WAL mode, as the sweep's are
            check_sqlite_store(tracking_uri)
            prepare_local_store(tracking_uri)
        with store_lock(tracking_uri):
            create_sqlite_store_atomically(tracking_uri)
            mlflow.set_tracking_uri(tracking_uri)  # this process writes one deployment: log_feedback uses it
            experiment = mlflow.get_experiment_by_name(deployment)
            self.experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(
                deployment, artifact_location=_artifacts_beside(tracking_uri),
                tags={"workbench.deployment": deployment})
        self._batch = TraceBatch(tracking_uri) if is_database_uri(tracking_uri) else None
        self._trace_ids: OrderedDict[str, str] = OrderedDict()  # answer id -> trace id, the latest KNOWN_IDS
        self.written = self.lost = self.feedback_written = self.feedback_lost = 0

    def counts(self) -> dict[str, int]:
        return {"written": self.written, "lost": self.lost, "feedback_written": self.feedback_written,
                "feedback_lost": self.feedback_lost}

    def run(self, inbox, done=None) -> None:
        """Write what arrives in `inbox` until stopped: ("batch", [(kind, item), ...]) as `ServeWriter` sends
        them, or one ("request" | "feedback", item), or ("stop", None); `done(n)` is called per message with
        the number of items handled. Traces are stored every BATCH or INTERVAL_S, and before any feedback
        (which needs its trace stored)."""
        unflushed: list[str] = []
        last = time.monotonic()
        while True:
            try:
                kind, item = inbox.get(timeout=INTERVAL_S)
            except queue.Empty:
                kind, item = "tick", None
            items = item if kind == "batch" else [(kind, item)]
            for kind_i, item_i in items:
                if kind_i == "request":
                    try:
                        self._trace(item_i)
                        unflushed.append(item_i.answer_id)
                    except Exception as exc:  # one bad trace must not stop the writer
                        self.lost += 1
                        _warn(f"trace of {item_i.answer_id} not written: {type(exc).__name__}: {exc}")
                if unflushed and (kind_i != "request" or len(unflushed) >= BATCH
                                  or time.monotonic() - last > INTERVAL_S):
                    self._flush(unflushed)
                    unflushed, last = [], time.monotonic()
                if kind_i == "feedback":
                    self._feedback(item_i)
            handled = sum(k in ("request", "feedback") for k, _ in items)
            if done is not None and handled:
                done(handled)
            if kind == "stop":
                return

    def _flush(self, answer_ids: list[str]) -> None:
        try:
            if self._batch is not None:
                self._batch.flush()
            else:
                self.mlflow.flush_trace_async_logging()
            self.written += len(answer_ids)
        except Exception as exc:
            self.lost += len(answer_ids)
            _warn(f"{len(answer_ids)} traces not stored: {type(exc).__name__}: {exc}")

    def _start(self, name: str, span_type: str, *, parent=None, **kwargs):
        if self._batch is not None:
            return self._batch.start_span(name, span_type, parent=parent, **kwargs)
        kwargs.pop("tags", None), kwargs.pop("metadata", None)
        return self.mlflow.start_span_no_context(name, span_type=span_type, parent_span=parent, **kwargs)

    def _trace(self, req: ServedRequest) -> None:
        from mlflow.entities import SpanType

        r = _redacted(req) if self.redact else req
        top = max((c["score"] for c in r.contexts), default=None)
        tags = {**self.tags, "workbench.answer_id": r.answer_id, "workbench.route": r.route,
                "workbench.status": "ERROR" if r.error else "OK", "workbench.latency_ms": f"{r.total_s * 1e3:.3f}",
                "workbench.generate_ms": f"{r.generate_s * 1e3:.3f}"}
        for key, value in (("tokens_prompt", r.prompt_tokens), ("tokens_completion", r.completion_tokens),
                           ("cost_usd", r.cost_usd), ("top_score", top), ("answered_by", r.answered_by),
                           ("escalated", r.escalated)):
            if value is not None:
                tags[TAG + key] = repr(float(value)) if isinstance(value, float) else str(value)
        t0 = r.started_ns
        t_ret = t0 + int(r.retrieve_s * 1e9)
        t_end = t0 + int(r.total_s * 1e9)
        root = self._start("serve", SpanType.CHAIN, inputs={"question": r.question},
                           attributes={"workbench.answer_id": r.answer_id, "workbench.route": r.route},
                           tags=tags, experiment_id=self.experiment_id, start_time_ns=t0)
        if self._batch is None:  # MLflow's own exporter (a tracking server): tags on the open trace
            from mlflow.tracing.trace_manager import InMemoryTraceManager

            with InMemoryTraceManager.get_instance().get_trace(root.trace_id) as trace:
                trace.info.tags.update(tags)
        status = "ERROR" if r.error else "OK"
        ret = self._start("retrieve", SpanType.RETRIEVER, parent=root, inputs={"query": r.question}, start_time_ns=t0)
        ret.end(outputs=[{"page_content": c["text"][:TEXT_CHARS], "id": c["chunk_id"],
                          "metadata": {"doc_uri": c["doc_id"], "chunk_id": c["chunk_id"], "score": c["score"]}}
                         for c in r.contexts], end_time_ns=t_ret, status="ERROR" if r.error and not r.contexts else "OK")
        if r.messages is not None:
            gen = self._start("generate", SpanType.CHAT_MODEL, parent=root,
                              inputs={"messages": r.messages, "model": r.model},
                              attributes={"usage.prompt_tokens": r.prompt_tokens,
                                          "usage.completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd,
                                          **({"workbench.answered_by": r.answered_by, "workbench.escalated": r.escalated,
                                              "workbench.calls": r.calls} if r.answered_by is not None else {})},
                              start_time_ns=t_ret)
            gen.end(outputs={"answer": r.answer, "error": r.error}, status=status,
                    end_time_ns=max(t_ret, t0 + int((r.retrieve_s + r.generate_s) * 1e9)))
        root.end(outputs={"answer": r.answer, "error": r.error, "doc_ids": [c["doc_id"] for c in r.contexts]},
                 status=status, end_time_ns=t_end)
        self._trace_ids[r.answer_id] = root.trace_id
        while len(self._trace_ids) > KNOWN_IDS:
            self._trace_ids.popitem(last=False)

    def _trace_id(self, answer_id: str) -> str | None:
        return self._trace_ids.get(answer_id) or find_answer(self.uri, self.experiment_id, answer_id)

    def _feedback(self, fb: UserFeedback) -> None:
        from mlflow.entities import AssessmentSource

        try:
            trace_id = self._trace_id(fb.answer_id)
            if trace_id is None:
                raise LookupError("its trace was not stored")
            source = AssessmentSource(source_type="HUMAN", source_id=fb.user or SOURCE_ID)
            comment = _redact_text(fb.comment) if self.redact else fb.comment
            if fb.rating is not None:
                name = "user_thumbs_up" if isinstance(fb.rating, str) else "user_rating"
                value = fb.rating == "up" if isinstance(fb.rating, str) else int(fb.rating)
                self.mlflow.log_feedback(trace_id=trace_id, name=name, value=value, source=source, rationale=comment,
                                         metadata={"workbench.negative": str(negative(fb.rating)).lower()})
            elif comment:
                self.mlflow.log_feedback(trace_id=trace_id, name="user_comment", value=comment, source=source)
            if fb.correction:
                correction = _redact_text(fb.correction) if self.redact else fb.correction
                self.mlflow.log_expectation(trace_id=trace_id, name="expected_response", value=correction,
                                            source=source)
            self.feedback_written += 1
        except Exception as exc:
            self.feedback_lost += 1
            _warn(f"feedback on {fb.answer_id} not written: {type(exc).__name__}: {exc}")


def find_answer(tracking_uri: str, experiment_id: str, answer_id: str) -> str | None:
    """The trace id of a stored answer, by its tag (after a restart, memory no longer holds it)."""
    from mlflow.tracing.client import TracingClient

    if not answer_id.replace("_", "").replace("-", "").isalnum():
        return None  # never put odd text into a filter string
    found = TracingClient(tracking_uri).search_traces(
        locations=[experiment_id], filter_string=f"tags.`workbench.answer_id` = '{answer_id}'",
        max_results=1, include_spans=False)
    return found[0].info.trace_id if found else None


def _artifacts_beside(tracking_uri: str) -> str | None:
    """A sqlite store's artifacts next to its file (as the sweep's are), not in whatever folder serve runs in."""
    from workbench.tracking.store import sqlite_path

    db = sqlite_path(tracking_uri)
    return str(db.resolve().parent / "artifacts") if db is not None else None


def _redact_text(text: str | None) -> str | None:
    from workbench.redact import redact_text

    return redact_text(text)


def _redacted(req: ServedRequest) -> ServedRequest:
    """The request as it may be logged: questions, answers, prompts and contexts without PII."""
    from dataclasses import replace

    from workbench.redact import redact_row

    messages = redact_row({"messages": req.messages})["messages"] if req.messages is not None else None
    contexts = [{**c, "text": _redact_text(c["text"]), "doc_id": _redact_text(c["doc_id"])} for c in req.contexts]
    return replace(req, question=_redact_text(req.question), answer=_redact_text(req.answer), messages=messages,
                   contexts=contexts, error=_redact_text(req.error))


def _warn(message: str) -> None:
    print(f"workbench serve: {message}", file=sys.stderr, flush=True)


def read_traces(tracking_uri: str, deployment: str, *, include_spans: bool = False, max_results: int = 100_000,
                since_ms: int | None = None) -> list:
    """The deployment's traces, oldest first (MLflow `Trace` objects)."""
    from mlflow.tracing.client import TracingClient

    from workbench.errors import TrackingError
    from workbench.tracking.store import require_existing_store

    require_existing_store(tracking_uri)
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(deployment)
    if experiment is None:
        raise TrackingError(f"deployment {deployment!r}: no such experiment in {tracking_uri}; start it with "
                            "`workbench serve winner.yaml --deployment NAME` or check --tracking-uri")
    client, out, token = TracingClient(tracking_uri), [], None
    where = f"trace.timestamp_ms >= {int(since_ms)}" if since_ms else None
    while len(out) < max_results:
        page = client.search_traces(locations=[experiment.experiment_id], filter_string=where,
                                    max_results=min(500, max_results - len(out)), order_by=["timestamp_ms ASC"],
                                    page_token=token, include_spans=include_spans)
        out.extend(page)
        token = page.token
        if not token:
            break
    return out


def trace_row(trace) -> dict[str, Any]:
    """The numbers the monitor needs from one trace's info; with spans, also its question and answer."""
    info = trace.info
    tags = info.tags

    def num(key: str) -> float | None:
        value = tags.get(TAG + key)
        return float(value) if value not in (None, "") else None

    root = next((sp for sp in (trace.data.spans if trace.data else []) if sp.parent_id is None), None)
    ratings = [a for a in info.assessments or [] if a.feedback is not None and a.name in ("user_thumbs_up", "user_rating")]
    neg = up = None
    for a in ratings:  # the last rating counts
        v = a.feedback.value
        neg = (v is False) if isinstance(v, bool) else (v is not None and float(v) <= 2)
        up = (v is True) if isinstance(v, bool) else (v is not None and float(v) >= 4)
    return {
        "question": (root.inputs or {}).get("question") if root is not None else None,
        "answer": (root.outputs or {}).get("answer") if root is not None else None,
        "trace_id": info.trace_id,
        "answer_id": tags.get(TAG + "answer_id"),
        "time_ms": info.request_time,
        "status": tags.get(TAG + "status", "OK"),
        "latency_ms": num("latency_ms"),
        "generate_ms": num("generate_ms"),
        "tokens_prompt": num("tokens_prompt"),
        "tokens_completion": num("tokens_completion"),
        "cost_usd": num("cost_usd"),
        "top_score": num("top_score"),
        "rated": bool(ratings),
        "negative": neg,
        "positive": up,
        "corrections": [a.expectation.value for a in info.assessments or []
                        if a.expectation is not None and a.name == "expected_response"],
        "config_hash": tags.get(TAG + "config_hash"),
        "sweep_id": tags.get(TAG + "sweep_id"),
        "answered_by": tags.get(TAG + "answered_by"),  # a routed export's named model (None: a plain model)
    }


def set_deployment_tag(tracking_uri: str, deployment: str, key: str, value: Any) -> None:
    """An experiment tag on the deployment (e.g. the sweep's retrieval baseline), JSON-encoded."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(deployment)
    client.set_experiment_tag(experiment.experiment_id, key, json.dumps(value))


def deployment_tag(tracking_uri: str, deployment: str, key: str) -> Any:
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(deployment)
    value = experiment.tags.get(key) if experiment else None
    return json.loads(value) if value else None


def list_deployments(tracking_uri: str) -> list[str]:
    """Names of the store's served deployments (experiments `workbench serve` created), sorted."""
    import mlflow

    from workbench.tracking.store import require_existing_store

    require_existing_store(tracking_uri)
    found = mlflow.MlflowClient(tracking_uri).search_experiments(filter_string="tags.`workbench.deployment` != ''")
    return sorted(e.name for e in found)
