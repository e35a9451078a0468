"""The Tracker protocol without MLflow or a model: the helper-process proxy running an in-memory tracker
(round trip, order, one clear error, typos caught in the parent, the helper exiting with its parent) and
the NullTracker's answers, checked against the protocol's own return types."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import types
import typing
from pathlib import Path

import pandas as pd
import pytest

from conftest import small_spec
from memory_tracker import MemoryTracker
from workbench.errors import TrackingError
from workbench.spec import load_spec
from workbench.tracking import NullTracker, SweepStart, Tracker, protocol
from workbench.tracking.process import ProcessTracker, _forward

MEMORY = "memory_tracker:MemoryTracker"


def conforms(value, hint) -> bool:
    """Is `value` of type `hint` (as far as isinstance can tell: unions, generics by their origin)?"""
    if hint is None or hint is type(None):
        return value is None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(conforms(value, h) for h in typing.get_args(hint))
    return isinstance(value, typing.get_origin(hint) or hint)


def answer_type(operation: str):
    """X in the protocol's `-> Future[X]` for `operation`."""
    hint = eval(getattr(Tracker, operation).__annotations__["return"], vars(protocol))
    return typing.get_args(hint)[0]


@pytest.fixture(scope="module")
def sweep_parts(tmp_path_factory):
    spec = load_spec(small_spec(tmp_path_factory.mktemp("spec")))
    variant = spec.variants()[0]
    rows = [{"variant_hash": variant.hash, "variant": variant.short_hash, "question_id": f"q{i}", "answer": f"a{i}"}
            for i in range(3)]
    return spec, variant, rows


def test_every_operation_answers_a_future_of_the_protocols_type(sweep_parts):
    spec, variant, rows = sweep_parts
    calls = {
        "start_sweep": (spec, "s1", 1, {"data.eval.questions": 3}),
        "start_variant": (variant, pd.DataFrame()),
        "log_cell": (variant, rows[0]),
        "finish_variant": (variant.hash, rows, {"questions": 3.0}),
        "runs_intact": ("s1", None, []),
        "finish_sweep": ("FINISHED", {"wall_s": 1.0}),
        "read_sweep": ("s1",),
        "discard_run": (None,),  # last: it deletes the memory tracker's run
    }
    assert set(calls) == protocol.OPERATIONS
    for tracker in (NullTracker(), MemoryTracker()):
        assert isinstance(tracker, Tracker)
        for operation, args in calls.items():
            if isinstance(tracker, MemoryTracker) and operation == "discard_run":
                args = (tracker.runs and next(iter(tracker.runs)),)
            future = getattr(tracker, operation)(*args)
            assert future.done()
            if isinstance(tracker, NullTracker) and operation == "read_sweep":
                with pytest.raises(TrackingError, match="tracking is disabled"):
                    future.result()
                continue
            assert conforms(future.result(), answer_type(operation)), (type(tracker).__name__, operation, future.result())
        assert tracker.close() is None  # a failed read-back is its own failure, not the sweep's logging's
    null = NullTracker()
    assert null.start_sweep(spec, "s1", 1, {}).result() == SweepStart(parent_run_id=None, children={})
    assert null.runs_intact("s1", None, []).result() is True  # nothing logged, nothing missing
    assert null.finish_variant(variant.hash, rows, {}).result() is None  # no run, so no run id


def test_a_misspelt_operation_fails_in_the_parent_before_anything_is_sent():
    with pytest.raises(TypeError, match="not a Tracker operation"):
        _forward(lambda self: None)  # what `finsh_variant = _forward(...)` would be given
    with pytest.raises(TypeError, match="not a Tracker operation"):
        class Broken(protocol.Immediate):
            @protocol.immediate
            def finsh_variant(self, variant_hash):
                return None
    tracker = ProcessTracker(MEMORY)
    with pytest.raises(TypeError, match="'finsh_variant' is not a Tracker operation"):
        tracker._call("finsh_variant", ("h",), {})
    with pytest.raises(TypeError):
        tracker.finish_variant("h")  # rows and metrics missing: caught by the protocol's signature
    assert tracker._session is None  # nothing reached the helper process
    assert tracker.close() is None


def test_the_helper_runs_the_calls_in_order_and_answers_each(sweep_parts, tmp_path):
    spec, variant, rows = sweep_parts
    journal = tmp_path / "journal"
    tracker = ProcessTracker(MEMORY, journal=str(journal))
    started = tracker.start_sweep(spec, "s1", 1, {"data.eval.questions": 3})
    run = tracker.start_variant(variant, pd.DataFrame())
    for row in rows:
        tracker.log_cell(variant, row)
    finished = tracker.finish_variant(variant.hash, rows, {"questions": 3.0})
    tracker.finish_sweep("FINISHED", {"wall_s": 2.0})
    back = tracker.read_sweep("s1").result(timeout=60)  # the sweep never waited on the calls before it
    assert started.result().parent_run_id == back["parent_run_id"] and started.result().children == {}
    assert finished.result() == run.result() == back["run_ids"][variant.hash]
    assert [r["question_id"] for r in back["rows"]] == ["q0", "q1", "q2"] and back["status"] == "FINISHED"
    assert back["spec"] == spec and back["wall_s"] == 2.0
    assert tracker.close() is None
    order = ["start_sweep", "start_variant", "log_cell", "log_cell", "log_cell", "finish_variant", "finish_sweep", "read_sweep"]
    assert journal.read_text().split() == order
    spans = tracker.timings["spans"]  # what the benchmark probe reads: each call's time in the helper
    assert [op for op, _, _, _ in spans] == order and all(a <= b and cpu >= 0 for _, a, b, cpu in spans)
    # after close the next call opens a new session: a fresh tracker in the helper
    assert tracker.runs_intact("s1", back["parent_run_id"], []).result(timeout=60) is False
    assert tracker.close() is None


def test_the_helper_stores_what_its_tracker_holds_when_no_job_comes(sweep_parts, tmp_path):
    spec, variant, rows = sweep_parts
    journal = tmp_path / "journal"
    tracker = ProcessTracker("memory_tracker:HoldingTracker", journal=str(journal))
    tracker.start_sweep(spec, "s1", 1, {})
    tracker.start_variant(variant, pd.DataFrame())
    for row in rows[:2]:
        tracker.log_cell(variant, row).result(timeout=60)
    deadline = time.monotonic() + 30
    while "idle" not in journal.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # no further job: the helper's idle turn stores them
    assert journal.read_text().splitlines()[-1] == "idle q0 q1"
    assert tracker.close() is None
    assert "idle" in [op for op, _, _, _ in tracker.timings["spans"]]  # timed like a job, for the profilers


def test_a_failed_idle_store_is_the_sessions_one_clear_error(sweep_parts, tmp_path):
    spec, variant, rows = sweep_parts
    journal = tmp_path / "journal"
    tracker = ProcessTracker("memory_tracker:HoldingTracker", journal=str(journal), fail_on="idle")
    tracker.start_sweep(spec, "s1", 1, {})
    tracker.start_variant(variant, pd.DataFrame())
    tracker.log_cell(variant, rows[0]).result(timeout=60)
    deadline = time.monotonic() + 30
    while "idle failing" not in journal.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the helper's idle turn fails
    with pytest.raises(TrackingError, match="skipped after an earlier tracking failure: .*injected failure in idle"):
        tracker.log_cell(variant, rows[1]).result(timeout=60)
    assert "injected failure in idle" in str(tracker.close())


def test_a_failure_in_the_helper_is_one_clear_error_and_later_calls_are_skipped(sweep_parts, tmp_path):
    import workbench.tracking.process as tp

    spec, variant, rows = sweep_parts
    tracker = ProcessTracker(MEMORY, fail_on="start_variant")
    tracker.start_sweep(spec, "s1", 1, {})
    failed = tracker.start_variant(variant, pd.DataFrame())
    skipped = tracker.log_cell(variant, rows[0])
    with pytest.raises(TrackingError, match=r"tracking failed \(start_variant\): injected failure") as first:
        failed.result(timeout=60)
    assert "run the same spec again" in str(first.value)
    with pytest.raises(TrackingError, match="skipped after an earlier tracking failure: .*injected failure"):
        skipped.result(timeout=60)
    helper = tp._worker.proc
    assert str(tracker.close()) == str(first.value)  # the first failure, once
    assert tracker.close() is None
    helper.wait(timeout=30)  # a failed session retires its helper: MLflow may have cached a broken store
    assert tracker.start_sweep(spec, "s2", 1, {}).result(timeout=60).parent_run_id  # on a fresh helper
    assert tp._worker.proc.pid != helper.pid
    assert tracker.close() is None


def test_unpicklable_arguments_and_a_dead_helper_fail_the_call_not_the_sweep(sweep_parts):
    import workbench.tracking.process as tp

    spec, variant, rows = sweep_parts
    tracker = ProcessTracker(MEMORY)
    tracker.start_sweep(spec, "s1", 1, {}).result(timeout=60)
    with pytest.raises(TrackingError, match="cannot send log_cell to the tracking process"):
        tracker.log_cell(variant, {"question_id": lambda: None}).result(timeout=60)
    tp._worker.proc.kill()
    tp._worker.proc.wait()
    with pytest.raises(TrackingError, match="exited unexpectedly. The answers are saved: run the same spec again"):
        tracker.finish_sweep("FINISHED").result(timeout=60)
    assert isinstance(tracker.close(), TrackingError)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited (a zombie waits for a reaper we do not control)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_the_helper_exits_when_its_parent_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import workbench.tracking.process as tp
        tracker = tp.ProcessTracker({MEMORY!r})
        assert tracker.runs_intact("s", None, []).result(timeout=60) is False
        print(tp._worker.proc.pid, flush=True)
        input()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    helper = int(parent.stdout.readline())
    assert not _gone(helper)
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while not _gone(helper) and time.time() < deadline:
        time.sleep(0.1)
    assert _gone(helper)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_the_exit_waits_for_the_helper_only_while_a_job_is_unanswered(tmp_path):
    """Once every job is answered, the command's exit does not wait for the helper's own (it leaves by itself
    at once); a job still running is waited for."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import workbench.tracking.process as tp
        tracker = tp.ProcessTracker({MEMORY!r})
        assert tracker.runs_intact("s", None, []).result(timeout=60) is False
        worker = tp._worker
        print(worker.proc.pid, flush=True)
        worker.call(-1, "__preload__", ("slow_exit_probe",)).result(timeout=60)  # its exit takes 1 s
        started = time.perf_counter()
        if sys.argv[1] == "busy":
            worker.call(tracker._session, "__preload__", ("sklearn",))  # a session's job of seconds: unanswered
        worker.stop()
        print(round(time.perf_counter() - started, 3), worker.proc.poll(), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    idle = subprocess.run([sys.executable, "-c", script, "idle"], capture_output=True, text=True, env=env, timeout=120)
    busy = subprocess.run([sys.executable, "-c", script, "busy"], capture_output=True, text=True, env=env, timeout=120)
    assert idle.returncode == busy.returncode == 0, idle.stderr + busy.stderr
    helper, idle_out = idle.stdout.split("\n", 1)
    seconds, code = idle_out.split()
    assert code == "None" and float(seconds) < 1.0, idle.stdout  # returned while the helper was still leaving
    deadline = time.time() + 20
    while not _gone(int(helper)) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(int(helper))  # ... and it left by itself
    assert busy.stdout.split("\n", 1)[1].split()[1] == "0"  # waited for: it had finished its job and exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_helper_started_early_is_stopped_when_no_session_needs_it(tmp_path):
    """`workbench run` starts the helper before it has read the spec; a spec with tracking off stops it (its
    MLflow import would compete with the sweep), while a helper that runs a session is left alone."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import workbench.tracking.process as tp
        from workbench.tracking import stop_idle_helper, warm_up
        warm_up()
        idle = tp._worker.proc
        stop_idle_helper()
        idle.wait(timeout=10)
        tracker = tp.ProcessTracker({MEMORY!r})
        assert tracker.runs_intact("s", None, []).result(timeout=60) is False
        busy = tp._worker.proc
        stop_idle_helper()
        print(idle.pid, idle.returncode, busy.pid, busy.poll(), flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    idle_pid, idle_code, busy_pid, busy_code = done.stdout.split()
    assert idle_code != "None" and _gone(int(idle_pid))  # killed
    assert idle_pid != busy_pid and busy_code == "None"  # a new helper for the session, still running then


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_the_exit_does_not_wait_for_a_helper_that_is_only_warming_up():
    """A command that fails before any session (a bad spec) exits at once: the helper, still importing MLflow
    for a sweep that never came, is stopped rather than waited for (~2 s)."""
    script = textwrap.dedent("""
        import time
        import workbench.tracking.process as tp
        from workbench.tracking import warm_up
        warm_up()
        worker = tp._worker
        started = time.perf_counter()
        worker.stop()
        print(worker.proc.pid, round(time.perf_counter() - started, 3), flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pid, seconds = done.stdout.split()
    assert float(seconds) < 1.0
    deadline = time.time() + 10
    while not _gone(int(pid)) and time.time() < deadline:
        time.sleep(0.05)
    assert _gone(int(pid))


@pytest.mark.slow
def test_the_helpers_store_warm_up_runs_only_while_idle(tmp_path):
    """The throwaway store is opened only when no job waits; otherwise the first of them opens the real one."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import workbench.tracking.process as tp
        worker = tp._get_worker()
        if sys.argv[1] == "busy":
            worker.call(-1, "__preload__", ("sklearn",))  # seconds: the jobs below are waiting when it ends
        warmed = worker.call(-1, "__warm_store__")
        if sys.argv[1] == "idle":
            warmed.result(timeout=120)
        tp.ProcessTracker({MEMORY!r}).runs_intact("s", None, []).result(timeout=120)
        print(warmed.result(timeout=120), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    busy = subprocess.run([sys.executable, "-c", script, "busy"], capture_output=True, text=True, env=env, timeout=180)
    idle = subprocess.run([sys.executable, "-c", script, "idle"], capture_output=True, text=True, env=env, timeout=180)
    assert busy.returncode == idle.returncode == 0, busy.stderr + idle.stderr
    assert busy.stdout.split() == ["None"]  # skipped: answered as a preload
    assert float(idle.stdout) > 0  # done: it answers the seconds it took


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_a_helper_whose_command_quick_exited_leaves_without_the_interpreters_teardown(tmp_path):
    """A finished command leaves with `os._exit`, often before its sender thread has passed the helper its None:
    the helper then reads end-of-file. With no session open it leaves as on the None, skipping the ~1 s of module
    teardown (a full core, which the user's next command would share); a session still open (the command
    died mid-sweep) keeps the ordinary exit."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import workbench.tracking.process as tp
        tracker = tp.ProcessTracker({MEMORY!r})
        assert tracker.runs_intact("s", None, []).result(timeout=60) is False
        tp._worker.call(-1, "__preload__", ("teardown_probe",)).result(timeout=60)
        if sys.argv[1] == "closed":
            tracker.close()
        print(tp._worker.proc.pid, flush=True)
        os._exit(0)  # no atexit: the helper is never sent its None
    """)
    outcomes = {}
    for case in ("closed", "open"):
        mark = tmp_path / f"{case}.mark"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WORKBENCH_TEARDOWN_MARK": str(mark)}
        done = subprocess.run([sys.executable, "-c", script, case], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        helper = int(done.stdout.split()[0])
        deadline = time.time() + 30
        while not _gone(helper) and time.time() < deadline:
            time.sleep(0.05)
        assert _gone(helper)  # it left by itself either way
        outcomes[case] = mark.exists()
    assert outcomes == {"closed": False, "open": True}  # quick exit / the teardown ran (the probe can tell)


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_the_helper_yields_to_the_sweep_only_once_the_first_answer_is_logged(sweep_parts):
    """Opening the store and storing the first trace are on the path to the first answer the user sees: the
    helper keeps its parent's priority until then, and lowers it after (`worker._yield_to_the_sweep`)."""
    import workbench.tracking.process as tp

    spec, variant, rows = sweep_parts
    with tp._worker_lock:
        old, tp._worker = tp._worker, None
    if old is not None:
        old.stop()  # a fresh helper, at its parent's priority
    tracker = ProcessTracker(MEMORY)
    tracker.start_sweep(spec, "s1", 1, {"data.eval.questions": 3}).result(timeout=60)
    tracker.start_variant(variant, pd.DataFrame()).result(timeout=60)
    helper = tp._worker.proc.pid
    before = _nice(helper)
    tracker.log_cell(variant, rows[0]).result(timeout=60)
    deadline = time.time() + 10
    while _nice(helper) == before and time.time() < deadline:
        time.sleep(0.02)  # lowered just after the answer is sent
    assert before == os.nice(0) and _nice(helper) == min(19, before + 3)
    assert tracker.close() is None
