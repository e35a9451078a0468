"""The sweep's event loop gets the GIL back quickly while other threads hold it.

During a sweep, threads run Python next to the event loop: imports (ragas on the preload thread, chromadb
on the index thread in a fresh CLI process), chunking, BM25 tokenising, the tracker's pickling, the cache
writer. A thread holding the GIL keeps it until the switch interval (5 ms by default) has passed, so each
time a model's answer arrives the loop may wait up to 5 ms before it can read it and send the next call.
Measured (16 calls in flight at L = 0.2 s against the fake endpoint, one pure-Python thread beside the loop,
load ~9 on 2 cores): 2.0-2.1x the ideal wall at 5 ms, 1.23-1.38x at 1 ms, 1.23-1.30x with no such thread.

Before the first model call there is no loop to hand back to: every thread's Python runs on the path to
it. So work the first calls do not need waits for the first answer (`at_most`): Chroma's ~1 s import when a
BM25 variant goes first, and the scorers' and the price table's imports (`load_scorers`, `warm_prices_after`),
which then run in the quiet while the first calls are out. Started with the loop or with the first call
instead, they held the GIL while the first requests were being made and sent: a fresh `workbench run` (8
variants x 100 questions, L = 0.2 s) made its first call 1.84 s after the process started, 1.50 s when they
waited (A/B, 6 alternating pairs; wall 12.62 -> 12.34 s). pandas is not imported by a sweep at all (the CLI
prints its table without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator

SWITCH_INTERVAL_S = 0.001
FIRST_ANSWER_WAIT_S = 1.0  # the longest deferred imports wait for the first answer (a slow local model's)

_lock = threading.Lock()
_depth = 0
_saved = 0.0


@contextlib.contextmanager
def responsive_loop(interval: float = SWITCH_INTERVAL_S) -> Iterator[None]:
    """`sys.setswitchinterval(interval)` while the block runs (process-wide; sweeps running at once share it,
    and the interval before the first is restored when the last ends)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, _saved))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                sys.setswitchinterval(_saved)


async def at_most(event: asyncio.Event, seconds: float = FIRST_ANSWER_WAIT_S) -> None:
    """Until `event` is set, or `seconds` have passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def load_scorers(first_answer: asyncio.Event) -> None:
    """Import the scorers (~0.2 s of CPU, on a thread) once the first answer is in; every score awaits this."""
    from workbench.scoring.metrics import preload_in_background

    await at_most(first_answer)
    await asyncio.wrap_future(preload_in_background())  # once per process: at once after a first sweep


async def warm_prices_after(first_answer: asyncio.Event, cfgs: list) -> None:
    """Load genai-prices' table (on a thread) once the first answer is in; every cell awaits this before it is
    priced on the loop, so the loop never imports it."""
    from workbench.rag.chat import warm_prices

    await at_most(first_answer)
    loaded = warm_prices(cfgs)
    if loaded is not None:
        with contextlib.suppress(Exception):  # the cell's own pricing raises it again, with its context
            await asyncio.wrap_future(loaded)


def after_first_answer(first_answer: asyncio.Event, models: list[list]) -> tuple[asyncio.Future, asyncio.Future]:
    """The scorers' and the price table (of `models`: each variant's chat models) loads, started now, each once
    the first answer is in."""
    return (asyncio.ensure_future(load_scorers(first_answer)),
            asyncio.ensure_future(warm_prices_after(first_answer, [m for ms in models for m in ms])))
