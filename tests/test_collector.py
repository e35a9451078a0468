"""The cyclic garbage collector paused while `workbench run` and its MLflow helper load their libraries (issue 20):
its full collections over a heap that only grows were ~12% of their start-up. It must come back: in the sweep
before the first model call, in the helper once the first answer is stored."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing.connection import Connection

from conftest import small_spec
from workbench import collector
from workbench.testing.fake_endpoint import LatencyEndpoint


def test_loaded_resumes_only_the_collection_pause_stopped():
    assert gc.isenabled()
    try:
        collector.pause()
        assert not gc.isenabled() and collector.paused()
        collector.loaded()
        assert gc.isenabled() and not collector.paused()
        assert gc.get_freeze_count() > 0  # what was loaded is out of later collections' walk

        gc.disable()  # a caller's own choice
        collector.pause()
        assert not collector.paused()
        collector.loaded()
        assert not gc.isenabled()  # stays theirs
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_paused_program_collects_again_when_its_sweep_starts_calling(tmp_path):
    with LatencyEndpoint(latency=0.02) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url,
                                   "max_tokens": 8}]
        spec["data"]["eval"]["limit"] = 3
        spec["tracking"]["enabled"] = False
        code = textwrap.dedent(f"""
            import gc
            from workbench import collector, events
            from workbench.runner.sweep import run_sweep

            collector.pause()  # what `workbench run` does first
            print("start", gc.isenabled())
            seen = []
            events.subscribe(lambda e: seen.append(gc.isenabled()) if e.name == "loop_started" else None)
            results = run_sweep({spec!r}, progress=False)
            print("loop", seen, "rows", len(results.rows), "after", gc.isenabled())
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "start False" in done.stdout
    assert "loop [True] rows 3 after True" in done.stdout, done.stdout


def test_the_helper_collects_again_once_its_first_answer_is_stored():
    """The helper's own loop (`worker.serve`) on a thread of this process, over the pipes the parent uses."""
    from workbench.tracking import worker

    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    send, recv = Connection(to_w, readable=False), Connection(from_r, writable=False)
    loop = threading.Thread(target=worker.serve, args=(to_r, from_w), daemon=True)
    collector.pause()  # what the helper's `__main__` does
    try:
        loop.start()
        send.send((0, 1, "__open__", (("workbench.tracking.null:NullTracker", (), {}), []), {}, time.time()))
        assert recv.recv()[1]
        time.sleep(5 * worker.IDLE_S)  # quiet, but no answer yet: still paused
        assert not gc.isenabled()
        send.send((1, 1, "log_cell", (None, {"question_id": "q1"}), {}, time.time()))
        assert recv.recv()[:2] == (1, True)
        deadline = time.monotonic() + 5
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(worker.IDLE_S)
        assert gc.isenabled() and not collector.paused()
    finally:
        send.close()  # a session is still open: the loop returns (no quick exit of this process)
        loop.join(timeout=5)
        recv.close()
        gc.enable()
        gc.unfreeze()
    assert not loop.is_alive()
