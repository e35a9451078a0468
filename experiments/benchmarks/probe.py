"""The benchmark's instrumentation: a listener on the workbench's public timing events
(`workbench.events`); nothing is patched and nothing the workbench computes changes.

`install()` subscribes once; `PROBE.reset()` clears the records between sweeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

from workbench import events

now = time.perf_counter


class Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.gen_spans: list[tuple[float, float]] = []  # model calls (start, end)
        self.cell_times: list[float] = []  # on_cell callback
        self.index_spans: list[tuple[float, float, bool]] = []  # Chroma collection opened or built (start, end, built)
        self.retrieve_spans: list[tuple[float, float]] = []  # per-question retrieval (retrieval thread)
        self.retrieve_s = 0.0
        self.retrieve_n = 0
        self.embed_calls = 0  # the embedding model itself, below the cache
        self.embedded_texts: list[str] = []
        self.embed_s = 0.0
        self.mlflow: dict[str, float] = defaultdict(float)  # seconds per tracking operation
        self.log_spans: list[tuple[float, float]] = []  # every tracking operation in the logging process
        self.mlflow_cpu: dict[str, float] = defaultdict(float)  # the logging process's CPU seconds per operation
        self.score_s = 0.0  # per-cell scoring, on the event loop
        self.score_n = 0
        self.score_max_s = 0.0
        self.cache_s = 0.0  # generation cache get/set
        self.cache_ops = 0
        self.loop_lag: list[float] = []  # event-loop lateness samples (s)
        self._monitor: asyncio.Task | None = None

    # event-loop lag: a 10 ms ticker inside the sweep's loop; lateness = time the loop was blocked
    async def lag_monitor(self, tick: float = 0.01) -> None:
        while True:
            t = now()
            await asyncio.sleep(tick)
            self.loop_lag.append(max(0.0, now() - t - tick))

    def on_event(self, e: events.Event) -> None:
        span = (e.start, e.end)
        name = e.name
        if name == "generate":
            self.gen_spans.append(span)
        elif name == "index_build":
            self.index_spans.append((e.start, e.end, bool(e.info.get("built"))))
        elif name == "retrieve":
            self.retrieve_spans.append(span)
            self.retrieve_s += e.seconds
            self.retrieve_n += 1
        elif name == "embed":
            with self.lock:
                self.embed_calls += 1
                self.embedded_texts.extend(e.info.get("texts", ()))
                self.embed_s += e.seconds
        elif name == "score":
            self.score_s += e.seconds
            self.score_n += 1
            self.score_max_s = max(self.score_max_s, e.seconds)
        elif name == "cache":
            self.cache_s += e.seconds
            self.cache_ops += 1
        elif name.startswith("tracking."):
            self.mlflow[name.removeprefix("tracking.")] += e.seconds
            if e.info.get("process"):  # the logging process's operations (not the sweep thread's checks)
                self.log_spans.append(span)
                self.mlflow_cpu[name.removeprefix("tracking.")] += e.info.get("cpu_s", 0.0)
        elif name == "loop_started":
            self._monitor = e.info["loop"].create_task(self.lag_monitor())
        elif name == "execution_done" and self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None


PROBE = Probe()
_installed = False


def install() -> Probe:
    global _installed
    if not _installed:
        _installed = True
        events.subscribe(PROBE.on_event)
    return PROBE
