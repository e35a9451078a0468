"""What a sweep's first model calls wait for (issue 20): nothing is imported on the event loop once the calls
have started. anyio's asyncio backend (the request deadline's first use, ~0.1 s) is not imported at all, and
genai-prices (the first answer's cost, ~50 ms) and the scorers load on their own thread once the first answer is
in, in the quiet while the first calls are out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import small_spec
from workbench.testing.fake_endpoint import LatencyEndpoint


def _four_questions(tmp_path, ep) -> dict:
    """A BM25 sweep of four questions against `ep`, tracking off."""
    spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
    spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url, "max_tokens": 8}]
    spec["data"]["eval"]["limit"] = 4
    spec["tracking"]["enabled"] = False
    return spec


def test_nothing_is_imported_on_the_event_loop_after_the_first_call(tmp_path):
    with LatencyEndpoint(latency=0.05) as ep:
        spec = _four_questions(tmp_path, ep)
        code = textwrap.dedent(f"""
            import sys, threading, time
            from workbench import events
            from workbench.runner.sweep import run_sweep

            calling = []  # from the loop's start until execution_done
            events.subscribe(lambda e: calling.append(e.name) if e.name in ("loop_started", "execution_done") else None)
            on_loop = []

            class Watch:
                def find_spec(self, name, path=None, target=None):
                    if calling and calling[-1] != "execution_done" and threading.current_thread() is threading.main_thread():
                        on_loop.append(name)
                    return None

            sys.meta_path.insert(0, Watch())
            results = run_sweep({spec!r}, progress=False)
            print("rows", len(results.rows), "answered", sum(bool(r["answer"]) for r in results.rows))
            print("prices", "genai_prices" in sys.modules)
            print("on_loop", sorted(set(on_loop)))
            print("anyio_backend", "anyio._backends._asyncio" in sys.modules)
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["rows"] == "4 answered 4" and lines["prices"] == "True"  # priced (None: genai-prices knows no such model)
    assert lines["on_loop"] == "[]", done.stdout
    assert lines["anyio_backend"] == "False"


def test_the_scorers_and_prices_load_once_the_first_answer_is_in(tmp_path):
    """Before the first answer, every thread's Python shares the GIL with the first calls being made and sent:
    the scorers' import (~0.2 s of CPU) and the price table's start on their thread after the first call has
    been answered, and every answer is still scored and priced."""
    with LatencyEndpoint(latency=0.2) as ep:
        spec = _four_questions(tmp_path, ep)
        code = textwrap.dedent(f"""
            import sys, time
            from workbench import events
            from workbench.runner.sweep import run_sweep

            answered = []
            events.subscribe(lambda e: answered.append(e.end) if e.name == "generate" else None)
            first_import = {{}}

            class Watch:
                def find_spec(self, name, path=None, target=None):
                    if name in ("rouge_score", "genai_prices"):
                        first_import.setdefault(name, time.perf_counter())
                    return None

            sys.meta_path.insert(0, Watch())
            results = run_sweep({spec!r}, progress=False)
            print("scored", sum(r.get("rouge_l") is not None for r in results.rows), len(results.rows))
            print("priced", sum("cost_usd" in r for r in results.rows))
            print("after_first_answer", all(first_import[m] > min(answered) for m in ("rouge_score", "genai_prices")))
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["scored"] == "4 4"
    assert lines["priced"] == "4"
    assert lines["after_first_answer"] == "True", done.stdout
