"""The Tracker protocol: every operation the runner needs from an experiment tracker, and its calling convention.

Calling convention: every operation returns a `concurrent.futures.Future`, in every implementation.
The sweep never waits on one unless it needs the value (resuming needs the logged runs); it attaches
callbacks instead, so a slow store never stalls the event loop. An in-process tracker runs the call at
once and returns a completed future (`immediate`); `ProcessTracker` returns a pending one, completed
when its helper process has run the call. Calls run in the order they are made.

Failures: the first failed logging call's error is kept; every later logging call fails with "skipped
after an earlier tracking failure" without touching the store; `close()` waits for every call made so
far and returns that first error (None if all succeeded), then forgets it, so a tracker may serve the
next sweep. Reading back (`read_sweep`) is no part of a sweep's logging: its failure is its own.
The answers never depend on the tracker: the sweep's record holds them, and running the same spec again
finishes the logging (`RERUN_HINT`).
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import Future
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Concatenate, NamedTuple, ParamSpec, Protocol, Sequence, TypeVar, runtime_checkable

from workbench.errors import TrackingError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.spec import SweepSpec, VariantConfig

RERUN_HINT = "The answers are saved: run the same spec again (once MLflow is reachable) to finish logging this sweep."


class LoggedRun(NamedTuple):
    """A variant's run as found in the store when a sweep is resumed."""

    run_id: str
    status: str  # RUNNING, FINISHED, FAILED or KILLED


class SweepStart(NamedTuple):
    """What starting (or reopening) a sweep answers."""

    parent_run_id: str | None  # None when nothing is logged (tracking disabled)
    children: dict[str, LoggedRun]  # variant hash -> its run already logged (resuming), else empty


@runtime_checkable
class Tracker(Protocol):
    """One sweep's tracking: a parent run per sweep, a run per variant, a trace per question."""

    def start_sweep(
        self, spec: SweepSpec, sweep_id: str, n_variants: int, data_info: dict[str, Any], resume_run_id: str | None = None
    ) -> Future[SweepStart]:
        """Start the sweep's parent run, or reopen it when resuming (found by sweep id if `resume_run_id` is None)."""
        ...

    def start_variant(self, variant: VariantConfig, eval_rows: Sequence[dict] | pd.DataFrame) -> Future[str | None]:
        """Create the variant's run (params, YAML, eval set) before its first cell; answers its run id."""
        ...

    def log_cell(self, variant: VariantConfig, row: dict[str, Any]) -> Future[None]:
        """One finished question of a started variant (a trace, rebuilt from the row's timings)."""
        ...

    def finish_variant(
        self, variant_hash: str, rows: Sequence[dict[str, Any]], metrics: dict[str, float], status: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> Future[str | None]:
        """Metrics and the per-question table, then the run's end status (default FINISHED, FAILED when every
        cell failed, KILLED for a cancelled variant); answers the run id. `tags`: extra run tags (a search's
        rung and question count for the variant)."""
        ...

    def discard_run(self, run_id: str) -> Future[None]:
        """Delete a partial run (killed mid-variant) and its traces: its variant is logged again whole."""
        ...

    def runs_intact(self, sweep_id: str, parent_run_id: str | None, run_ids: Sequence[str]) -> Future[bool]:
        """Are a finished sweep's parent and variant runs all still there and FINISHED?"""
        ...

    def finish_sweep(self, status: str, metrics: dict[str, float] | None = None,
                     tags: dict[str, str | None] | None = None) -> Future[None]:
        """End the parent run with the sweep's status, metrics (wall_s, variants_done, estimate.*, actual.*) and
        tags (workbench.stopped_by: budget; a None value removes the tag, e.g. when a resumed sweep finishes)."""
        ...

    def read_sweep(self, sweep_id: str) -> Future[dict[str, Any]]:
        """A logged sweep read back from the store alone: the fields of a SweepResults."""
        ...

    def close(self) -> BaseException | None:
        """Wait for every call made so far; return the first failure among them (then forget it)."""
        ...


_CALLED_AT: ContextVar[float | None] = ContextVar("workbench_tracking_called_at", default=None)


def called_at() -> float:
    """When the caller made the running call (epoch seconds). The helper process runs a call later than
    it was made (it may be behind with traces): run start and end times must be the caller's."""
    when = _CALLED_AT.get()
    return time.time() if when is None else when


def end_status(metrics: dict[str, float], status: str | None) -> str:
    """A variant run's end status: the sweep's (KILLED when cancelled), else FAILED when every cell failed."""
    if status is None and metrics.get("failed_cells", 0) > 0 and metrics.get("failed_cells") == metrics.get("questions"):
        status = "FAILED"
    return status or "FINISHED"


OPERATIONS = frozenset(name for name in vars(Tracker) if not name.startswith("_") and name != "close")
LOGGING = OPERATIONS - {"read_sweep"}  # the calls under the first-failure rule


def tracking_failure(operation: str, exc: BaseException, what: str = "tracking", at: str | None = None) -> TrackingError:
    """One clear error for an unexpected exception: what failed, where, and (when logging) how to finish."""
    where = f" at {at}" if at else ""
    hint = f". {RERUN_HINT}" if operation in LOGGING else ""
    return TrackingError(f"{what} failed ({operation}){where}: {exc}{hint}")


# ------------------------------------------------------------------ the convention, in process

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", bound="Immediate")


class Immediate:
    """Base of trackers that run each call at once in the caller's thread (see `immediate`)."""

    _failed: BaseException | None = None

    def failure(self, operation: str, exc: Exception) -> TrackingError:
        """The one clear error for an unexpected exception in `operation` (a backend says where it failed)."""
        return tracking_failure(operation, exc)

    def close(self) -> BaseException | None:
        failed, self._failed = self._failed, None
        return failed


def immediate(method: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[T, P], Future[R]]:
    """Make a plain method a Tracker operation: run it now, answer a completed Future, keep the first failure."""
    if method.__name__ not in OPERATIONS:  # a misspelt operation fails when its class is defined
        raise TypeError(f"{method.__qualname__} is not a Tracker operation ({', '.join(sorted(OPERATIONS))})")

    logging = method.__name__ in LOGGING

    @functools.wraps(method)
    def call(self: T, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        future: Future[R] = Future()
        if logging and self._failed is not None:
            future.set_exception(TrackingError(f"skipped after an earlier tracking failure: {self._failed}"))
            return future
        try:
            future.set_result(method(self, *args, **kwargs))
        except Exception as exc:  # KeyboardInterrupt and the like still stop the caller
            error = exc if isinstance(exc, TrackingError) else self.failure(method.__name__, exc)
            if logging:
                self._failed = error
            future.set_exception(error)
        return future

    return call
