"""End a finished command without the interpreter's teardown.

A `workbench run` process has imported pandas, ragas, chromadb, onnxruntime and their dependencies; at exit
Python frees every module and object one by one, 1-3 s on 2 cores (measured: ragas or chromadb alone ~1.2 s)
in which nothing is written and the user waits for the prompt. Once the command is done, `exit_now` runs
every atexit handler (the local model and the MLflow helper are stopped, caches closed, logs flushed) and
then leaves with `os._exit`. It falls back to an ordinary exit while any non-daemon thread still runs, since
Python would join it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_code(code: object) -> int:
    """What `sys.exit(code)` would exit with (a message is printed to stderr, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def busy_threads() -> list[str]:
    """Non-daemon threads other than this one still running: Python's own exit would wait for them."""
    me = threading.current_thread()
    return [t.name for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def exit_now(code: object = 0) -> None:
    """Exit with `code` as `sys.exit` would, minus the module teardown. Never returns."""
    if busy_threads():
        raise SystemExit(code)
    status = exit_code(code)
    atexit._run_exitfuncs()  # no public API runs them; os._exit alone would skip them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
