"""MLflow writes in a helper process, so they never compete with a sweep for Python's interpreter lock.

MLflow's client is pure Python (SQLAlchemy, alembic migrations on a new store, a few database round
trips per trace span). On a logging thread it took the lock from the event loop often enough to slow a
sweep's model calls by 15 % on 2 cores; in its own process it costs the sweep nothing but pickling.

One worker process per Python process, started on first use and reused by every sweep (its imports are
paid once); it reads jobs from a pipe and runs them strictly in order. A sweep talks to it through a
`TrackingSession`, whose calls return futures. The first failure in a session is kept, later jobs of
that session are skipped, and `close()` returns it. If the parent dies, the worker sees end-of-file and
exits.

    python -m workbench.tracking.process READ_FD WRITE_FD     # started by the parent, never by hand
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from workbench.errors import TrackingError

# ---------------------------------------------------------------- the parent side


_FINISH = "The answers are saved: run the same spec again (once MLflow is reachable) to finish logging this sweep."
_GONE = f"the MLflow logging process exited unexpectedly. {_FINISH}"


class _Worker:
    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.tracking.process", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        # Jobs are pickled and written by a sender thread: a full pipe (the worker busy with a trace)
        # must never block the sweep's event loop, which submits them.
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.dead = False  # set when it exited or retired: the next session starts a new worker
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="workbench-mlflow-reader", daemon=True)
        self._reader.start()
        self._sender = threading.Thread(target=self._write, name="workbench-mlflow-sender", daemon=True)
        self._sender.start()

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None and self._reader.is_alive() and self._sender.is_alive()

    def call(self, session: int, method: str, *args: Any) -> Future:
        future: Future = Future()
        job = next(self._ids)
        self._pending[job] = future
        self._outbox.put((job, session, method, args))
        return future

    def _write(self) -> None:
        while True:
            msg = self._outbox.get()
            try:
                self._send.send(msg)
            except (OSError, ValueError) as exc:  # the worker is gone
                if msg is not None:
                    future = self._pending.pop(msg[0], None)
                    if future is not None:
                        future.set_exception(TrackingError(f"{_GONE} ({exc})"))
                continue
            if msg is None:
                return

    def _read(self) -> None:
        while True:
            try:
                job, ok, value = self._recv.recv()
            except (EOFError, OSError):
                self.dead = True
                break
            future = self._pending.pop(job, None)
            if future is not None:
                future.set_result(value) if ok else future.set_exception(value)
        for future in list(self._pending.values()):  # the worker died: nobody will answer these
            future.set_exception(TrackingError(_GONE))
        self._pending.clear()

    def stop(self) -> None:
        self._outbox.put(None)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_worker: _Worker | None = None
_worker_lock = threading.Lock()
_sessions = itertools.count()


def _get_worker() -> _Worker:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.alive():
            _worker = _Worker()
            atexit.register(_worker.stop)
        return _worker


def warm_up() -> None:
    """Start the worker now, so its imports overlap the caller's own start-up work."""
    _get_worker()


class TrackingSession:
    """One sweep's MLflow calls, run in order in the worker process. Methods are those of
    `workbench.tracking.mlflow_tracker.MlflowTracker` (plus `start_variant`/`log_trace`/`finish_variant` keyed by
    variant), each returning a `concurrent.futures.Future`."""

    def __init__(self, cfg, experiment: str):
        self._worker = _get_worker()
        self._id = next(_sessions)
        self.cfg = cfg
        self.timings: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.submit("__open__", cfg, experiment)

    def submit(self, method: str, *args: Any) -> Future:
        future = self._worker.call(self._id, method, *args)
        future.add_done_callback(self._keep_error)
        return future

    def _keep_error(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None and self.error is None:
            self.error = exc

    def close(self) -> BaseException | None:
        """Wait for every job of this session; its timings land in `timings`; returns the first failure."""
        try:
            self.timings = self.submit("__close__").result()
            if self.timings.get("retire"):
                self._worker.dead = True  # it exits after a failure: MLflow may have cached a broken store
        except BaseException as exc:  # the failure is already kept in self.error
            if self.error is None:
                self.error = exc
        return self.error


class NullSession:
    """Tracking disabled: the same calls, answered at once, nothing logged."""

    timings: dict[str, Any] = {}
    error = None
    _answers = {"start_sweep": (None, {}), "runs_intact": True}

    def submit(self, method: str, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(self._answers.get(method))
        return future

    def close(self) -> None:
        return None


def open_session(cfg, experiment: str) -> "TrackingSession | NullSession":
    return TrackingSession(cfg, experiment) if cfg.enabled else NullSession()


def outer_run_id() -> str | None:
    """The caller's own active MLflow run, under which a sweep nests (none if MLflow was never imported)."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None


# ---------------------------------------------------------------- the worker side


class _Session:
    """The worker's side of one sweep: an MlflowTracker plus each variant's run id."""

    def __init__(self, cfg, experiment: str):
        from workbench.tracking.mlflow_tracker import MlflowTracker

        self.tracker = MlflowTracker(cfg, experiment, defer_open=False)
        self.run_ids: dict[str, str] = {}
        self.timings: dict[str, Any] = {"spans": []}  # (method, start, end); perf_counter is system-wide
        self.failed: BaseException | None = None

    def start_sweep(self, *args: Any, **kwargs: Any) -> tuple[str | None, dict[str, tuple[str, str]]]:
        self.tracker.start_sweep(*args, **kwargs)
        return self.tracker.parent_run_id, dict(self.tracker.children)

    def start_variant(self, variant, eval_frame) -> str:
        run_id = self.tracker.start_variant(variant, eval_frame)
        self.run_ids[variant.hash] = run_id
        return run_id

    def log_trace(self, variant, row) -> None:
        self.tracker.log_trace(variant, self.run_ids[variant.hash], row)

    def finish_variant(self, variant_hash: str, rows, metrics, status=None) -> str:
        run_id = self.run_ids[variant_hash]
        self.tracker.finish_variant(run_id, rows, metrics, status=status)
        return run_id

    def discard_run(self, run_id: str) -> None:
        self.tracker.discard_run(run_id)

    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids) -> bool:
        return self.tracker.runs_intact(sweep_id, parent_run_id, run_ids)

    def end_sweep(self, status: str, metrics=None) -> None:
        self.tracker.end_sweep(status, metrics)


def _serve(read_fd: int, write_fd: int) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # MLflow/pandas deprecation chatter would land in the user's terminal
    try:
        os.nice(10)  # background work: on a busy machine the sweep (and a local model) come first
    except OSError:
        pass
    import mlflow  # noqa: F401  (the slow import, done before the first job arrives)

    import workbench.tracking.mlflow_tracker  # noqa: F401

    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    sessions: dict[int, _Session] = {}
    while True:
        try:
            msg = recv.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg is None:
            return
        job, sid, method, args = msg
        start = time.perf_counter()
        try:
            if method == "__open__":
                try:
                    sessions[sid] = _Session(*args)
                except TrackingError as exc:  # the URI was checked before the sweep; the store failed since
                    raise TrackingError(f"{exc} {_FINISH}") from None
                sessions[sid].timings["spans"].append(("open", start, time.perf_counter()))
                value: Any = None
            elif method == "__close__":
                session = sessions.pop(sid, None)
                value = session.timings if session is not None else {}
                retire = session is None or session.failed is not None
                value = {**value, "retire": retire}
            else:
                session = sessions.get(sid)
                if session is None:
                    raise TrackingError("MLflow tracking could not be opened for this sweep (see the first error)")
                if session.failed is not None:
                    raise TrackingError(f"skipped after an earlier MLflow failure: {session.failed}")
                try:
                    value = getattr(session, method)(*args)
                except TrackingError as exc:
                    session.failed = exc
                    raise
                except Exception as exc:  # MLflow raises many types: say what failed and where
                    session.failed = TrackingError(
                        f"MLflow logging failed ({method}) at {session.tracker.cfg.tracking_uri}: {exc}. {_FINISH}"
                    )
                    raise session.failed from None
                session.timings["spans"].append((method, start, time.perf_counter()))
            reply = (job, True, value)
        except TrackingError as exc:
            reply = (job, False, exc)
        except Exception as exc:  # opening the tracker: same rule, one clear error
            reply = (job, False, TrackingError(f"MLflow tracking failed ({method}): {exc}. {_FINISH}"))
        try:
            send.send(reply)
        except (OSError, ValueError):
            return
        if method == "__close__" and reply[1] and reply[2].get("retire"):
            return  # a session failed: start afresh rather than reuse MLflow's cached (maybe broken) store


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
