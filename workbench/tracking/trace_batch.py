"""Question traces built by MLflow's own span machinery, stored in batches.

MLflow's exporter stores each trace on its own: a `log_spans` transaction per span, then `start_trace`,
which finds the trace the spans created and merges into it row by row (~50-80 ms a trace on sqlite).
Here the spans are made the way `mlflow.start_span_no_context` makes them (MLflow's span processor sets
the same attributes, metadata, previews, token usage, so the stored trace is the same), but on a tracer
of our own whose exporter only collects the finished traces; `flush` stores them in one transaction: as
rows, one insert per MLflow trace table (`trace_rows.py`), or where that does not apply, one `start_trace`
per trace (the trace, its tags, metadata and assessments) and one `log_spans` for the spans of the whole
batch. The global tracer (the user's own traces) is not touched.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

from workbench.rag.lean_imports import starting_a_trace

BATCH = 50  # traces per flush: the helper stores them while the sweep goes on
FLUSH_EVERY_S = 1.0  # no trace waits longer for the batch to fill (the batch's first is stored at once)


def is_database_uri(uri: str) -> bool:
    """A tracking URI MLflow opens as a SQL store (sqlite:///…, postgresql+psycopg2://…), which takes spans."""
    from urllib.parse import urlparse

    from mlflow.store.db.db_types import DATABASE_ENGINES

    return urlparse(uri).scheme.split("+")[0] in DATABASE_ENGINES


@contextmanager
def one_transaction(store: Any) -> Iterator[None]:
    """Every session `store` (MLflow's SQL store) opens inside this block is one session, committed once at
    the end: a batch of `start_trace` and `log_spans` calls is one transaction instead of ~4 per trace (on
    sqlite each commit is a disk sync). A failure rolls the whole batch back and is raised."""
    own = store.__dict__.get("ManagedSessionMaker")
    if own is None:  # not the SQL store this was written against: its own sessions, as before
        yield
        return
    with own(read_only=False) as session:
        @contextmanager
        def shared(read_only: bool = True) -> Iterator[Any]:
            yield session

        # `start_trace` reads the trace's experiment back for every trace (a third of a batch's CPU); within
        # one transaction it cannot change, so each experiment is read once
        experiments: dict[str, Any] = {}
        read, own_read = store.get_experiment, store.__dict__.get("get_experiment")

        def get_experiment(experiment_id: str) -> Any:
            if experiment_id not in experiments:
                experiments[experiment_id] = read(experiment_id)
            return experiments[experiment_id]

        store.ManagedSessionMaker, store.get_experiment = shared, get_experiment
        try:
            yield
        finally:
            store.ManagedSessionMaker = own
            if own_read is None:
                del store.get_experiment  # the class's method again
            else:
                store.get_experiment = own_read


class _Collect:
    """An OpenTelemetry span exporter that keeps each finished trace instead of sending it."""

    def __init__(self, done: list, lock: threading.Lock):
        self.done, self.lock = done, lock

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult
        from mlflow.tracing.trace_manager import InMemoryTraceManager

        for span in spans:
            if span.parent is None:  # the root ends last: the trace is complete
                trace = InMemoryTraceManager.get_instance().pop_trace(span.context.trace_id)
                if trace is not None:
                    with self.lock:
                        self.done.append(trace.trace)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _no_litellm() -> None:
    """MLflow prices a span with token usage by trying `import litellm` on every trace; when it is not installed
    each try searches sys.path again (~0.2 ms a trace). Recording its absence once makes the failed import
    immediate; MLflow then uses its own price table, as it does anyway without litellm."""
    import importlib.util
    import sys

    if "litellm" not in sys.modules and importlib.util.find_spec("litellm") is None:
        sys.modules["litellm"] = None  # type: ignore[assignment]  # Python's "known to be absent" marker


class TraceBatch:
    """Spans started here become traces kept in memory until `flush` stores them in `tracking_uri`."""

    def __init__(self, tracking_uri: str):
        import mlflow
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from mlflow.tracing.client import TracingClient
        from mlflow.tracing.processor.mlflow_v3 import MlflowV3SpanProcessor

        _no_litellm()
        self.done: list = []
        self._lock = threading.Lock()
        self._flushed_at: float | None = None  # time.monotonic() of the last flush; None: nothing stored yet
        # The resource MLflow gives its own tracer (no service.* attributes, which would become trace tags).
        resource = Resource({"telemetry.sdk.language": "python", "telemetry.sdk.name": "mlflow",
                             "telemetry.sdk.version": mlflow.__version__})
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        provider.add_span_processor(MlflowV3SpanProcessor(_Collect(self.done, self._lock), export_metrics=False))
        self._tracer = provider.get_tracer(__name__)
        self.client = TracingClient(tracking_uri)

    def __len__(self) -> int:
        return len(self.done)

    def start_span(
        self, name: str, span_type: str, *, parent: Any = None, inputs: Any = None,
        attributes: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None, experiment_id: str | None = None, start_time_ns: int,
    ):
        """`mlflow.start_span_no_context` on this batch's tracer (same steps, same span)."""
        from opentelemetry import context as otel_context, trace as otel_trace
        from mlflow.tracing.constant import SpanAttributeKey
        from mlflow.tracing.trace_manager import InMemoryTraceManager
        from mlflow.tracing.utils import encode_span_id, get_otel_attribute

        attrs = {SpanAttributeKey.START_TIME_NS: json.dumps(start_time_ns)}
        if parent is None and experiment_id:
            attrs[SpanAttributeKey.EXPERIMENT_ID] = json.dumps(experiment_id)
        # A root gets an empty context: never the child of whatever span the caller has open.
        ctx = otel_trace.set_span_in_context(parent._span, otel_context.Context()) if parent else otel_context.Context()
        with starting_a_trace() if parent is None else nullcontext():
            otel_span = self._tracer.start_span(name, context=ctx, attributes=attrs, start_time=start_time_ns)
        trace_id = parent.trace_id if parent else get_otel_attribute(otel_span, SpanAttributeKey.REQUEST_ID)
        manager = InMemoryTraceManager.get_instance()
        span = manager.get_span_from_id(trace_id, encode_span_id(otel_span.context.span_id))
        span.set_span_type(span_type)
        if inputs is not None:
            span.set_inputs(inputs)
        span.set_attributes(attributes or {})
        if tags or metadata:
            with manager.get_trace(trace_id) as trace:
                trace.info.tags.update(tags or {})
                trace.info.trace_metadata.update(metadata or {})
        return span

    def due(self) -> bool:
        """Should the held traces be stored now? The first trace at once (the user sees an answer in the store
        without waiting for a batch), then when BATCH are held or FLUSH_EVERY_S has passed since the last
        flush; in between traces wait, so one transaction stores many."""
        if not self.done:
            return False
        if self._flushed_at is None or len(self.done) >= BATCH:
            return True
        return time.monotonic() - self._flushed_at >= FLUSH_EVERY_S

    def flush_if_due(self) -> bool:
        """`flush` when `due`; True if it stored traces."""
        if not self.due():
            return False
        self.flush()
        return True

    def flush(self) -> bool:
        """Store the finished traces (`store_traces`); True if there were any."""
        with self._lock:
            traces, self.done[:] = list(self.done), []
        if not traces:
            return False
        store_traces(self.client.store, traces)
        self._flushed_at = time.monotonic()
        return True


def store_traces(store: Any, traces: list) -> None:
    """Store finished traces in one transaction: as rows (`trace_rows`) where that leaves what MLflow's own
    path leaves, the rest by MLflow's `start_trace` per trace and one `log_spans` for their spans."""
    from mlflow.tracing.utils import add_size_stats_to_trace_metadata

    from workbench.tracking import trace_rows

    for trace in traces:
        add_size_stats_to_trace_metadata(trace)  # what MLflow's exporter adds before storing
    rows_ok = trace_rows.usable(store)
    bulk, rest = [], []
    for trace in traces:
        (bulk if rows_ok and trace.info.experiment_id and trace_rows.plain(trace) else rest).append(trace)
    by_experiment: dict[str, list] = {}
    with one_transaction(store):
        if bulk:
            experiments = {e: store.get_experiment(e) for e in {t.info.experiment_id for t in bulk}}
            for experiment in experiments.values():
                store._check_experiment_is_active(experiment)  # what start_trace checks
            with store.ManagedSessionMaker(read_only=False) as session:
                trace_rows.insert(store, session, bulk, experiments)
        for trace in rest:
            store.start_trace(trace.info)
            by_experiment.setdefault(trace.info.experiment_id, []).extend(trace.data.spans)
        for experiment_id, spans in by_experiment.items():
            store.log_spans(experiment_id, spans)
