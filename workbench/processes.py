"""Helpers for the local servers the workbench runs as subprocesses: start, readiness, stop, no orphans.

Used by the llama-cpp model server and the fake OpenAI endpoint (parent and child side alike).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the `workbench` package


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it; another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    """This environment for a Python child that must import this same `workbench`, whatever its
    working directory or what else is installed; unbuffered, so its log is complete when it dies."""
    python_path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=python_path)


def stop_process(process: subprocess.Popen, grace: float) -> int:
    """SIGTERM, then SIGKILL if it still runs after `grace` s; the exit code (nothing to do if it ended)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """A daemon thread that ends this process once `parent_pid` has exited.

    atexit in the parent covers normal exits and exceptions; this covers SIGKILL and crashes. (Not
    PR_SET_PDEATHSIG: it fires when the parent *thread* that forked exits, e.g. a worker thread.)
    """

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:  # re-parented: the parent is gone
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def wait_until_answers(url: str, process: subprocess.Popen, *, timeout: float, interval: float,
                       exited: Callable[[], BaseException], late: Callable[[], BaseException],
                       request_timeout: float = 2.0) -> None:
    """Poll `url` until it answers HTTP 200; raise `exited()` if `process` ends first, `late()` after `timeout` s.

    The callers build the errors because only they know what to quote (their log, their fix).
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise exited()
        try:
            with urllib.request.urlopen(url, timeout=request_timeout) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass  # not listening yet, or busy loading
        if time.monotonic() > deadline:
            raise late()
        time.sleep(interval)
