"""`ProcessTracker`: the Tracker protocol, run by a tracker in a helper process, so tracking never competes
with a sweep for Python's interpreter lock.

MLflow's client is pure Python (SQLAlchemy, alembic migrations on a new store, a few database round
trips per trace span). On a logging thread it took the lock from the event loop often enough to slow a
sweep's model calls by 15 % on 2 cores; in its own process it costs the sweep nothing but pickling.

One helper process per Python process (`workbench.tracking.worker`), started on first use and reused by
every sweep (its imports are paid once); it runs jobs strictly in the order they were made. Each
ProcessTracker is one session there, whose tracker the helper builds from an import path
("module:callable") and arguments, so a test can run any Tracker in it. Operations are the protocol's
own functions (`_forward`): a misspelt one fails when this module is imported, wrong arguments fail in
the caller, and an operation name the protocol lacks is refused before anything is sent. If the parent
dies, the helper sees end-of-file and exits; if the helper dies, every pending call fails with one
error that says the answers are saved and how to finish.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any, Callable, TypeVar

from workbench.events import Event, emit
from workbench.errors import TrackingError
from workbench.tracking.protocol import OPERATIONS, RERUN_HINT, Tracker

_GONE = f"the MLflow logging process exited unexpectedly. {RERUN_HINT}"


class _Worker:
    """The parent's end of the helper process: a sender thread, a reader thread, a future per job."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.tracking.worker", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        # Jobs are pickled and written by a sender thread: a full pipe (the helper busy with a trace)
        # must never block the sweep's event loop, which submits them.
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.dead = False  # set when it exited or retired: the next session starts a new helper
        self.store_warmed = False
        self.sessions_opened = 0
        self._warm_ups: set[int] = set()  # jobs of `warm_up` (imports, a throwaway store): nothing to store
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._reader = threading.Thread(target=self._read, name="workbench-mlflow-reader", daemon=True)
        self._reader.start()
        self._sender = threading.Thread(target=self._write, name="workbench-mlflow-sender", daemon=True)
        self._sender.start()

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None and self._reader.is_alive() and self._sender.is_alive()

    def call(self, session: int, operation: str, args: tuple = (), kwargs: dict | None = None) -> Future:
        future: Future = Future()
        job = next(self._ids)
        self._pending[job] = future
        if session == -1:
            self._warm_ups.add(job)
        self._outbox.put((job, session, operation, args, kwargs or {}, time.time()))  # when it was called
        return future

    def _write(self) -> None:
        while True:
            msg = self._outbox.get()
            try:
                self._send.send(msg)  # pickles first: an unpicklable job sends nothing
            except (OSError, ValueError) as exc:  # the helper is gone
                self._fail(msg, TrackingError(f"{_GONE} ({exc})"))
                continue
            except Exception as exc:
                self._fail(msg, TrackingError(f"cannot send {msg[2]} to the tracking process: {exc}"))
                continue
            if msg is None:
                return

    def _fail(self, msg: tuple | None, error: TrackingError) -> None:
        future = self._pending.pop(msg[0], None) if msg is not None else None
        if future is not None:
            future.set_exception(error)

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
        for future in list(self._pending.values()):  # the helper died: nobody will answer these
            future.set_exception(TrackingError(_GONE))
        self._pending.clear()

    def stop(self) -> None:
        """At exit: ask the helper to leave, and wait for it only while a job is unanswered (a sweep stopped
        mid-logging). With every job answered everything is stored; the helper's own exit (~40-70 ms: MLflow's
        exit handlers, then Popen.wait's polling) would only hold the command's prompt back."""
        answered = not self._pending and self.alive()  # before the sender thread ends with the None
        warming_only = set(self._pending) <= self._warm_ups  # e.g. a bad spec, refused before any session
        self._outbox.put(None)
        if answered:
            return
        if warming_only:
            self.proc.kill()  # mid-import: nothing of the user's to store, and seconds to wait for
            return
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


def warm_up(*modules: str, store: bool = False) -> None:
    """Start the helper now and have it import `modules` (and, with `store`, open a throwaway sqlite store),
    overlapping the caller's own start-up work; jobs run in order, so a session's first job waits for these."""
    worker = _get_worker()
    worker.call(-1, "__preload__", modules)
    if store and not worker.store_warmed:  # once per helper: every later sweep finds it warm
        worker.store_warmed = True
        worker.call(-1, "__warm_store__")


def stop_idle() -> None:
    """Stop the helper if no session was ever opened in it (it holds nothing to store: `stop` kills it mid
    warm-up); the next session starts a new one."""
    global _worker
    with _worker_lock:
        if _worker is not None and not _worker.sessions_opened:
            _worker.stop()
            _worker = None


F = TypeVar("F", bound=Callable[..., Future])


def _forward(operation: F) -> F:
    """`operation` (a Tracker protocol function) run by the helper's tracker: same name, same signature."""
    name = operation.__name__
    if name not in OPERATIONS:
        raise TypeError(f"{operation.__qualname__} is not a Tracker operation")
    signature = inspect.signature(operation)

    @functools.wraps(operation)
    def call(self: ProcessTracker, *args: Any, **kwargs: Any) -> Future:
        signature.bind(self, *args, **kwargs)  # wrong arguments fail here, not in the helper
        return self._call(name, args, kwargs)

    return call  # type: ignore[return-value]


class ProcessTracker:
    """The Tracker protocol, each call run in order by `factory(*args, **kwargs)` in the helper process.

    Calls return pending futures. The session in the helper starts with the first call; `close()` ends
    it (after a failed session the helper retires: MLflow may have cached a broken store), and the next
    call starts a new one.
    """

    def __init__(self, factory: str, *args: Any, **kwargs: Any):
        self._factory = (factory, args, kwargs)
        self._worker: _Worker | None = None
        self._session: int | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.timings: dict[str, Any] = {}  # the last closed session's {"spans": [(operation, start, end, cpu)]}

    start_sweep = _forward(Tracker.start_sweep)
    start_variant = _forward(Tracker.start_variant)
    log_cell = _forward(Tracker.log_cell)
    finish_variant = _forward(Tracker.finish_variant)
    discard_run = _forward(Tracker.discard_run)
    runs_intact = _forward(Tracker.runs_intact)
    finish_sweep = _forward(Tracker.finish_sweep)
    read_sweep = _forward(Tracker.read_sweep)

    def _call(self, operation: str, args: tuple, kwargs: dict) -> Future:
        if operation not in OPERATIONS:
            raise TypeError(f"{operation!r} is not a Tracker operation ({', '.join(sorted(OPERATIONS))})")
        with self._lock:  # the open job must be the session's first
            if self._session is None:
                self._worker, self._session = _get_worker(), next(_sessions)
                self._worker.sessions_opened += 1
                # the helper imports what this process can: a tracker defined by a test, say
                self._submit("__open__", (self._factory, list(sys.path)), {})
            return self._submit(operation, args, kwargs)

    def _submit(self, operation: str, args: tuple, kwargs: dict) -> Future:
        assert self._worker is not None and self._session is not None
        future = self._worker.call(self._session, operation, args, kwargs)
        future.add_done_callback(self._keep_error)
        return future

    def _keep_error(self, future: Future) -> None:
        exc = future.exception()
        if exc is not None and self._error is None:
            self._error = exc

    def close(self) -> BaseException | None:
        with self._lock:
            worker, session, self._session = self._worker, self._session, None
        if worker is not None and session is not None:
            try:
                self.timings = worker.call(session, "__close__").result()
                for operation, start, end, cpu in self.timings["spans"]:  # for profilers (workbench.events)
                    emit(Event(f"tracking.{operation}", start, end, {"process": True, "cpu_s": cpu}))
                if self.timings["retire"]:
                    worker.dead = True  # it exits after a failed session: the next one starts afresh
            except BaseException as exc:  # the helper died: nobody answers
                if self._error is None:
                    self._error = exc
        error, self._error = self._error, None
        return error


def outer_run_id() -> str | None:
    """The caller's own active MLflow run, under which a sweep nests (none if MLflow was never imported)."""
    mlflow = sys.modules.get("mlflow")
    run = mlflow.active_run() if mlflow is not None else None
    return run.info.run_id if run is not None else None
