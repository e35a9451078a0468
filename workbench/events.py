"""Timing events: the public hook benchmarks and profilers use instead of patching private names.

Instrumented places wrap their work in `span(name, **info)`; when nobody listens that is one list check.
A listener gets each finished `Event` on the thread that did the work, so it must be quick and
thread-safe. Names in use (see docs/architecture.md): generate, index_build, retrieve, embed, score,
cache, tracking.<operation>, and the instants loop_started (info["loop"]: the sweep's event loop) and
execution_done.

>>> seen = []
>>> unsubscribe = subscribe(seen.append)
>>> with span("demo", n=1):
...     pass
>>> unsubscribe()
>>> seen[0].name, seen[0].info, seen[0].end >= seen[0].start
('demo', {'n': 1}, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_listeners: list[Callable[[Event], None]] = []


@dataclass(frozen=True)
class Event:
    name: str
    start: float  # time.perf_counter() (system-wide on Linux, so comparable across processes)
    end: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def subscribe(listener: Callable[[Event], None]) -> Callable[[], None]:
    """Start receiving events; call the returned function to stop."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: Event) -> None:
    for listener in list(_listeners):
        listener(event)


def point(name: str, **info: Any) -> None:
    """An instant (start == end): e.g. `loop_started`, for listeners that must act before the work."""
    if _listeners:
        now = time.perf_counter()
        emit(Event(name, now, now, info))


@contextmanager
def span(name: str, **info: Any) -> Iterator[dict[str, Any]]:
    """Time the block; the yielded dict can be filled in with what is known only at the end."""
    if not _listeners:
        yield info
        return
    start = time.perf_counter()
    try:
        yield info
    finally:
        emit(Event(name, start, time.perf_counter(), info))
