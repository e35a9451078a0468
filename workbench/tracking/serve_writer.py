"""`ServeWriter`: the service's end of the helper process that writes its traces and feedback (`serve_log.ServeLog`).

Why a process: MLflow builds spans and talks to its store in pure Python; on a thread of the service it would
take the interpreter lock from the event loop answering requests (the sweep measured the same effect, see
`process.py`). The service only pickles a small record onto a `multiprocessing` queue (its feeder thread
writes the pipe). Records are buffered and handed over as one list per `hand_off()` (the service calls it every
few tens of milliseconds): one put, one pickle and one wake-up of the feeder thread per batch, not per request.
Requests and feedback travel in one queue, in order, so feedback is written after its trace. `close()` hands
over what is buffered, sends a stop after everything else and waits for the helper: a graceful shutdown loses
nothing accepted.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import OrderedDict

from workbench.errors import TrackingError
from workbench.tracking.serve_log import KNOWN_IDS, ServedRequest, UserFeedback

START_TIMEOUT_S = 120.0
NICE = 10  # the writer's scheduling priority below the service's
MAX_BUFFER = 256  # records buffered before a hand-off is forced (a burst between two of the service's hand-offs)


def _helper(uri: str, deployment: str, tags: dict, redact: bool, inbox, conn, pending) -> None:
    import os

    from workbench.tracking.serve_log import ServeLog

    # Background work: when the cores are busy, the service answering requests goes first; the queue holds the
    # records meanwhile (and is drained at stop)
    os.nice(NICE)

    try:
        log = ServeLog(uri, deployment, tags, redact=redact)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", log.experiment_id))

    def done(n: int) -> None:
        with pending.get_lock():
            pending.value -= n

    log.run(inbox, done)
    conn.send(("counts", log.counts()))


class ServeWriter:
    def __init__(self, tracking_uri: str, deployment: str, tags: dict[str, str], *, redact: bool = True):
        ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no threads or locks of ours copied
        self.uri, self.deployment = tracking_uri, deployment
        self._inbox = ctx.Queue()
        self._pending = ctx.Value("i", 0)
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_helper, name="workbench-serve-writer", daemon=True,
                                    args=(tracking_uri, deployment, dict(tags), redact, self._inbox, child,
                                          self._pending))
        self._process.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self._process.kill()
            raise TrackingError(f"the trace writer for {tracking_uri} did not start within {START_TIMEOUT_S:.0f} s")
        try:
            kind, value = self._conn.recv()
        except EOFError:
            raise TrackingError(f"the trace writer for {tracking_uri} exited at start (code "
                                f"{self._process.exitcode}); check --tracking-uri") from None
        if kind == "error":
            raise TrackingError(f"cannot trace to {tracking_uri} (deployment {deployment!r}): {value}; check "
                                "--tracking-uri and that the store is writable")
        self.experiment_id = value
        self._issued: OrderedDict[str, None] = OrderedDict()
        self._buffer: list[tuple[str, ServedRequest | UserFeedback]] = []
        self.counts: dict[str, int] | None = None

    def log_request(self, req: ServedRequest) -> None:
        self._issued[req.answer_id] = None
        if len(self._issued) > KNOWN_IDS:
            self._issued.popitem(last=False)
        self._put(("request", req))

    def log_feedback(self, fb: UserFeedback) -> None:
        self._put(("feedback", fb))

    def _put(self, message) -> None:
        self._buffer.append(message)
        if len(self._buffer) >= MAX_BUFFER:
            self.hand_off()

    def hand_off(self) -> None:
        """Send the buffered records to the helper as one message (call it from the thread that logs them)."""
        batch, self._buffer = self._buffer, []
        if batch:
            with self._pending.get_lock():
                self._pending.value += len(batch)
            self._inbox.put(("batch", batch))

    def issued(self, answer_id: str) -> bool:
        """Whether this process gave that answer recently (memory only: no MLflow read)."""
        return answer_id in self._issued

    def knows(self, answer_id: str) -> bool:
        """Whether this deployment gave that answer: in memory, else (an older one) a trace tagged with it."""
        if answer_id in self._issued:
            return True
        from workbench.tracking.serve_log import find_answer

        return find_answer(self.uri, self.experiment_id, answer_id) is not None

    def pending(self) -> int:
        """Traces and feedback accepted but not yet written."""
        return self._pending.value + len(self._buffer)

    def close(self, timeout: float = 300.0) -> dict[str, int] | None:
        """Write everything queued, stop the helper; its counts (written, lost, feedback_written, feedback_lost)."""
        if self.counts is not None or not self._process.is_alive():
            return self.counts
        self.hand_off()
        self._inbox.put(("stop", None))
        if self._conn.poll(timeout):
            try:
                self.counts = self._conn.recv()[1]
            except EOFError:
                pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
        if self.counts is None:
            print(f"workbench serve: the trace writer did not finish; {self.pending()} traces or feedback may be "
                  "lost", file=sys.stderr, flush=True)
        return self.counts
