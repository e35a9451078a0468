"""The helper process behind `ProcessTracker`: runs each session's tracker, one job at a time, in order.

    python -m workbench.tracking.worker READ_FD WRITE_FD     # started by the parent, never by hand

Jobs are (job, session, operation, args, kwargs, called_at: the caller's clock); answers are (job, ok, value or TrackingError). Besides
the protocol's operations: "__preload__" (import modules ahead of use), "__warm_store__" (open a throwaway
sqlite store: the first real open then skips MLflow's store imports and set-up; skipped when jobs already wait,
as the first of them opens the real store), "__open__" (build the session's
tracker from "module:callable"), "__close__" (end the session; answers {"retire": whether this process
exits now, "spans": [(operation, start, end, cpu)]}, perf_counter times, system-wide on Linux, and this process's
CPU seconds in the operation (which a loaded machine does not inflate), for profiling).
The first failed logging job of a session is kept and its later ones skipped, whatever the tracker does.
When no job has come for IDLE_S, each session's tracker stores what it holds (its optional `idle()`, called once
per quiet spell: the MLflow tracker's traces held for a batch), so answers become visible while the sweep waits
on its model, and what is left for a variant's end, after its last answer, is the last few cells' traces.
The garbage collector is off from the start until the first answer is stored (`workbench.collector`).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from workbench import collector
from workbench.errors import TrackingError
from workbench.tracking.protocol import _CALLED_AT, LOGGING, OPERATIONS, RERUN_HINT, tracking_failure

# no job for this long: the trackers may store what they hold (`_Session.idle`). Answers come in bursts (the
# calls in flight answered about together), the jobs with them; a pause this long means the sweep is waiting.
IDLE_S = 0.02


def build(factory: str, args: tuple, kwargs: dict) -> Any:
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)(*args, **kwargs)


class _Session:
    def __init__(self, tracker: Any = None, failed: BaseException | None = None):
        self.tracker, self.failed = tracker, failed
        self.spans: list[tuple[str, float, float, float]] = []

    def run(self, operation: str, args: tuple, kwargs: dict) -> Any:
        if operation not in OPERATIONS:
            raise TrackingError(f"{operation!r} is not a Tracker operation")
        logging = operation in LOGGING
        if logging and self.failed is not None:
            raise TrackingError(f"skipped after an earlier tracking failure: {self.failed}")
        start, cpu = time.perf_counter(), time.process_time()
        try:
            value = getattr(self.tracker, operation)(*args, **kwargs).result()
            self.spans.append((operation, start, time.perf_counter(), time.process_time() - cpu))
            return value
        except Exception as exc:  # a tracker that broke the protocol's rule still gives one clear error
            error = exc if isinstance(exc, TrackingError) else tracking_failure(operation, exc)
            if logging:
                self.failed = error
            raise error from None

    def idle(self) -> None:
        """The tracker's optional `idle()` (store what it holds), timed like a job; a failure is the session's
        first failure (its later logging jobs are skipped and `close` reports it), as a failed job's would be."""
        hook = getattr(self.tracker, "idle", None)
        if hook is None or self.failed is not None:
            return
        start, cpu = time.perf_counter(), time.process_time()
        try:
            stored = hook()
        except Exception as exc:  # noqa: BLE001 - kept, reported by the session's next job and its close
            self.failed = exc if isinstance(exc, TrackingError) else tracking_failure("log_cell", exc)
            return
        if stored:
            self.spans.append(("idle", start, time.perf_counter(), time.process_time() - cpu))


def _answer(sessions: dict[int, _Session], sid: int, operation: str, args: tuple, kwargs: dict) -> Any:
    if operation == "__preload__":
        for module in args:
            importlib.import_module(module)
        return None
    if operation == "__warm_store__":
        return _warm_store()
    if operation == "__open__":
        (factory, f_args, f_kwargs), paths = args
        sys.path.extend(p for p in paths if p not in sys.path)
        try:
            sessions[sid] = _Session(build(factory, f_args, f_kwargs))
        except Exception as exc:
            sessions[sid] = _Session(failed=TrackingError(f"could not start the tracker {factory}: {exc}. {RERUN_HINT}"))
            raise sessions[sid].failed from None
        return None
    if operation == "__close__":
        session = sessions.pop(sid, None)
        if session is None or session.tracker is None:
            return {"retire": True, "spans": []}
        failed = session.tracker.close() is not None or session.failed is not None
        return {"retire": failed, "spans": session.spans}
    session = sessions.get(sid)
    if session is None:
        raise TrackingError("tracking could not be opened for this sweep (see the first error)")
    return session.run(operation, args, kwargs)


def _warm_store() -> float:
    """Open (and so create, from the template) a throwaway store, in a temporary folder removed at once.

    Opening a sqlite store the first time in a process costs seconds (SQLAlchemy's dialects, alembic, MLflow's
    store and tracing set-up); a second one costs ~0.1 s. The sweep's own store may only be created once its
    checks passed, so this runs at the very start of the command, while the sweep loads data and builds indexes.
    Best effort: a failure here is the real open's to report. Answers the seconds it took."""
    import tempfile

    from workbench.spec import TrackingConfig
    from workbench.tracking.mlflow_tracker import MlflowTracker

    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-warm-") as tmp:
            cfg = TrackingConfig(tracking_uri=f"sqlite:///{tmp}/warm.db", artifact_location=f"{tmp}/artifacts")
            tracker = MlflowTracker(cfg, "workbench-warm-up")
            tracker.open()
            _warm_traces(cfg.tracking_uri, tracker.experiment.experiment_id)
    except Exception:  # noqa: BLE001 - only a head start; the sweep's own open says what is wrong
        pass
    return time.perf_counter() - start


def _warm_traces(tracking_uri: str, experiment_id: str) -> None:
    """Store one trace the way a sweep's are stored (`TraceBatch`): the sweep's first trace, which the user is
    waiting to see, then skips the tracing imports and set-up (~1 s on a loaded machine)."""
    from mlflow.entities import SpanType

    from workbench.tracking.trace_batch import TraceBatch

    batch = TraceBatch(tracking_uri)
    now = time.time_ns()
    root = batch.start_span("warm-up", SpanType.CHAIN, inputs={"question": "?"}, experiment_id=experiment_id,
                            start_time_ns=now)
    root.end(outputs={"answer": "!"}, end_time_ns=now + 1)
    batch.flush()


def _yield_to_the_sweep() -> None:
    """Background work, but only mildly: the user waits for it too (a sweep's wall ends when every answer is
    logged), and at nice 10 a loaded machine starved it into a tail of tens of seconds after the last model
    call. Nice 3 still yields to the sweep (and a local model) about 2:1. Taken once the first answer is logged,
    not at start nor at the first session: the imports, the store's first opening and the first trace are all on
    the path to the first answer the user sees (A/B, 8 pairs of warm CLI runs: visible 3.35 -> 3.10 s after the
    first call, median)."""
    try:
        os.nice(3)
    except OSError:
        pass


def _leave() -> None:
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        try:
            mlflow.flush_trace_async_logging()  # none are queued (traces are stored in batches), but be sure
        except Exception:  # noqa: BLE001 - exiting either way
            pass
    from workbench.quick_exit import exit_now

    exit_now(0)


def serve(read_fd: int, write_fd: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # MLflow/pandas deprecation chatter would land in the user's terminal
    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    sessions: dict[int, _Session] = {}
    niced = False
    while True:
        try:
            if not recv.poll(IDLE_S):
                for session in sessions.values():
                    session.idle()  # it stores all it holds: nothing more to do until the next job
                if niced and collector.paused():  # the first answer is stored: the start-up is over
                    collector.loaded()
            msg = recv.recv()
        except (EOFError, OSError):  # the parent is gone: a quick exit leaves before its None is sent
            msg = None
        if msg is None:
            if not sessions:  # every session closed: all is written, skip the ~1 s teardown of MLflow's modules
                _leave()
            return
        job, sid, operation, args, kwargs, when = msg
        if operation == "__warm_store__" and recv.poll(0):  # real jobs wait: they open the real store themselves
            operation, args = "__preload__", ()
        _CALLED_AT.set(when)
        try:
            reply = (job, True, _answer(sessions, sid, operation, args, kwargs))
        except TrackingError as exc:
            reply = (job, False, exc)
        except Exception as exc:
            reply = (job, False, tracking_failure(operation, exc))
        try:
            send.send(reply)
        except (OSError, ValueError):
            return
        except Exception as exc:  # an answer that cannot be pickled
            send.send((job, False, TrackingError(f"the answer to {operation} could not be sent back: {exc}")))
        if operation == "log_cell" and not niced:  # the first answer is stored (or buffered): the rest can yield
            _yield_to_the_sweep()
            niced = True
        if operation == "__close__" and collector.paused():  # a session with no answer at all
            collector.loaded()
        if operation == "__close__" and reply[1] and reply[2]["retire"]:
            return  # a session failed: start afresh rather than reuse MLflow's cached (maybe broken) store


if __name__ == "__main__":
    # MLflow's, SQLAlchemy's and the tracing's imports, ~3 s of CPU, are all on the way to the first answer the
    # user sees: collect nothing until it is stored (A/B, 5 pairs of warm CLI runs: visible 3.33 -> 2.88 s)
    collector.pause()
    serve(int(sys.argv[1]), int(sys.argv[2]))
