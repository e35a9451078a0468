"""Helpers for the local servers the workbench runs as subprocesses: a free port, no orphans, readiness.

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it; another process could still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
