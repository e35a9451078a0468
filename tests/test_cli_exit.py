"""The CLI as a whole command (issue 20): nothing heavy on the way from the last model call to the exit, no
stray llama.cpp line on stderr, the interpreter's teardown skipped only when nothing is left to run."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import textwrap

from conftest import small_spec
from memory_tracker import MemoryTracker
from workbench import events
from workbench.runner.sweep import run_sweep
from workbench.testing.fake_endpoint import LatencyEndpoint


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_exit_now_runs_every_atexit_handler_and_keeps_the_exit_code(tmp_path):
    marker = tmp_path / "atexit-ran"
    done = run_python(f"""
        import atexit, pathlib, sys
        from workbench.quick_exit import exit_now
        atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("yes"))
        print("answer", flush=False)  # flushed by exit_now, not lost
        exit_now(3)
        print("never")
    """)
    assert done.returncode == 3 and marker.read_text() == "yes"
    assert done.stdout == "answer\n"


def test_exit_now_waits_for_a_running_thread_as_python_would(tmp_path):
    marker = tmp_path / "thread-finished"
    done = run_python(f"""
        import pathlib, threading, time
        from workbench.quick_exit import exit_now
        def work():
            time.sleep(0.3)
            pathlib.Path({str(marker)!r}).write_text("done")
        threading.Thread(target=work).start()
        exit_now("a message")
    """)
    assert done.returncode == 1 and "a message" in done.stderr
    assert marker.read_text() == "done"  # the ordinary exit joined it


def test_the_local_token_counter_prints_nothing_to_stderr():
    """The estimate's vocab-only tokenizer: llama.cpp's 'n_ctx_seq (512) > n_ctx_train (0)' came from a context
    `Llama(vocab_only=True)` builds; the counter now loads the vocabulary alone."""
    done = run_python("""
        from workbench.runner.tokens import _local_counter
        counter = _local_counter()
        print(counter.count([{"role": "user", "content": "Who won Super Bowl 50?"}]), counter.exact)
    """)
    assert done.returncode == 0, done.stderr
    count, exact = done.stdout.split()
    assert int(count) > 8 and exact == "True"  # the chat template's tokens and the question's
    assert done.stderr == ""


def test_the_estimate_sample_is_rendered_while_the_sweep_runs_not_at_its_end(tmp_path):
    """Each variant's prompt sample (estimate.* beside actual.*) is rendered when it finishes, on its own thread:
    the sweep's thread retrieves nothing after the last cell."""
    seen: list[tuple[str, str, float]] = []
    unsubscribe = events.subscribe(lambda e: seen.append((e.name, threading.current_thread().name, e.end)))
    tracker = MemoryTracker()
    with LatencyEndpoint(latency=0.01) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 1}, {"kind": "bm25", "k": 2}])
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url, "max_tokens": 8}]
        spec["data"]["eval"]["limit"] = 3
        try:
            results = run_sweep(spec, progress=False, tracker=tracker)
        finally:
            unsubscribe()
    (done_at,) = [end for name, _, end in seen if name == "execution_done"]
    main = threading.current_thread().name
    assert not [e for e in seen if e[0] == "retrieve" and e[1] == main and e[2] > done_at]
    assert any(name == "retrieve" and thread.startswith("workbench-estimate") for name, thread, _ in seen)
    (parent,) = [r for r in tracker.runs.values() if r["kind"] == "sweep"]
    assert parent["metrics"]["estimate.calls"] == parent["metrics"]["actual.calls"] == len(results.rows)
    assert parent["metrics"]["estimate.prompt_tokens"] > 0


def test_a_command_line_sweep_prints_its_table_without_ever_importing_pandas(tmp_path):
    """pandas (~0.4 s of CPU) was imported beside the first model calls only for the table printed at the end;
    the table is now text from the same aggregates. The whole command, in its own process, logged to MLflow."""
    import json

    with LatencyEndpoint(latency=0.01) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url, "max_tokens": 8}]
        spec["data"]["eval"]["limit"] = 3
        (tmp_path / "spec.yaml").write_text(json.dumps(spec), encoding="utf-8")
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "workbench.cli", "run", str(tmp_path / "spec.yaml"),
                               "--no-progress"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "mlflow" not in imported and "workbench.analysis.text_table" in imported  # the probe sees this process
    assert "pandas" not in imported
    order = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert order.index("workbench.tracking.process") < order.index("typer")  # the MLflow helper starts first
    assert "httpcore" not in imported  # httpx's sync transport: the endpoint check goes through the async client
    # lean_imports: httpx's CLI and tornado only looked up and refused (a real import of either is tens of ms)
    cumulative_us = {line.rsplit("|", 1)[-1].strip(): int(line.split("|")[1]) for line in done.stderr.splitlines()
                     if line.startswith("import time:") and line.split("|")[1].strip().isdigit()}
    assert {"httpx", "tenacity"} <= imported
    assert cumulative_us.get("httpx._main", 0) < 2000 and cumulative_us.get("tornado", 0) < 2000
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("variant "))
    header, rows = lines[at], list(itertools.takewhile(lambda line: not line.startswith(("note:", "model calls")),
                                                       lines[at + 1:]))  # the table: up to the notes after it
    assert header.split()[:3] == ["variant", "label", "hit_at_k"]
    assert len(rows) == 1 and "bm25@2" in rows[0]
