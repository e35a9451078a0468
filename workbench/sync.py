"""Run a coroutine to completion from synchronous code, also where an event loop already runs.

`asyncio.run` raises inside a running loop - a Jupyter kernel's, or an async caller's. There the
coroutine runs on a fresh loop in a worker thread while the caller's thread waits for it.
`in_daemon_thread` runs a function in the background and hands back a future of it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coro: Coroutine[Any, Any, T], *, thread_name: str = "workbench-async") -> T:
    """`asyncio.run(coro)`; inside a running loop, the same in a worker thread named `thread_name`.

    Whatever the coroutine raises is raised here, in the caller's thread. The worker is a daemon
    thread, so a KeyboardInterrupt in the waiting caller (a notebook's interrupt) returns at once
    instead of waiting for the coroutine as an executor's shutdown would.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=thread_name, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def in_daemon_thread(fn: Callable[[], T], name: str) -> Future:
    """`fn()` on a daemon thread named `name`; the future holds its result or what it raised. A daemon thread,
    not a pool's: an idle pool thread would keep a finished command from its quick exit."""
    done: Future = Future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - whoever waits on the future raises it
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done
