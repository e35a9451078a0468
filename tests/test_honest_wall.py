"""The wall a sweep reports is what its user waits for: until every answer is logged (issue 20)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from memory_tracker import MemoryTracker
from test_memory_sweep import endpoint, spec_for  # noqa: F401 (endpoint: the module's fixture)
from workbench.runner.sweep import run_sweep

DELAY = 0.3  # a helper that is behind: each variant's table lands this long after it was handed over


class LateTracker(MemoryTracker):
    """Finishes a variant's logging late, on another thread, as the helper process does when busy."""

    def __init__(self):
        super().__init__()
        self.logged_at: list[float] = []
        self.wall_measured_by: float | None = None

    def finish_variant(self, *args, **kwargs) -> Future:
        done, late = super().finish_variant(*args, **kwargs), Future()

        def later() -> None:
            time.sleep(DELAY)
            self.logged_at.append(time.perf_counter())
            late.set_result(done.result())

        threading.Thread(target=later, daemon=True).start()
        return late

    def finish_sweep(self, status, metrics=None, tags=None):
        self.wall_measured_by = time.perf_counter()  # wall_s is taken just before this call
        return super().finish_sweep(status, metrics, tags)


def test_wall_includes_the_time_until_every_answer_is_logged(tmp_path, endpoint):  # noqa: F811
    tracker = LateTracker()
    t0 = time.perf_counter()
    results = run_sweep(spec_for(tmp_path, endpoint.base_url), progress=False, tracker=tracker)
    assert results.status == "FINISHED" and len(tracker.logged_at) == 2
    assert tracker.wall_measured_by >= max(tracker.logged_at)  # measured after the last table was logged
    assert results.wall_s >= max(tracker.logged_at) - t0 - 0.05  # so the wall covers it
    assert len(results.run_ids) == 2  # and the run ids the late futures answered are in the results
