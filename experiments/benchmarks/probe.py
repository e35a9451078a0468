"""Outside-in instrumentation for the benchmark: wraps workbench functions in this process only.

Nothing here changes what the workbench computes; each wrapper records timestamps / counts and calls
the original. `install()` patches once; `PROBE.reset()` clears the records between sweeps.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections import defaultdict

now = time.perf_counter


class Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.gen_spans: list[tuple[float, float]] = []  # ChatModel.agenerate (start, end)
        self.cell_times: list[float] = []  # on_cell callback
        self.index_spans: list[tuple[float, float, bool]] = []  # ChunkIndex._open_or_build (start, end, built)
        self.retrieve_spans: list[tuple[float, float]] = []  # Workspace.retrieve (retrieval thread)
        self.retrieve_s = 0.0  # Workspace.retrieve: per-question search time (memo misses and hits)
        self.retrieve_n = 0
        self.embed_calls = 0  # LocalMiniLM.embed calls (the model itself, below the cache)
        self.embedded_texts: list[str] = []
        self.embed_s = 0.0
        self.mlflow: dict[str, float] = defaultdict(float)  # seconds per MlflowTracker method
        self.log_spans: list[tuple[float, float]] = []  # every MlflowTracker call on the logging thread
        self.score_s = 0.0  # _score_cell, on the event loop
        self.score_n = 0
        self.score_max_s = 0.0
        self.cache_s = 0.0  # ResultCache.get/set, on the event loop
        self.cache_ops = 0
        self.loop_lag: list[float] = []  # event-loop lateness samples (s)

    # event-loop lag: a 10 ms ticker inside the sweep's loop; lateness = time the loop was blocked
    async def lag_monitor(self, tick: float = 0.01) -> None:
        while True:
            t = now()
            await asyncio.sleep(tick)
            self.loop_lag.append(max(0.0, now() - t - tick))


PROBE = Probe()
_installed = False


def install() -> Probe:
    global _installed
    if _installed:
        return PROBE
    _installed = True
    import workbench.rag.cache as cache_mod
    import workbench.rag.embeddings as emb
    import workbench.rag.chat as models
    import workbench.rag.retrieval as retrieval
    import workbench.runner.sweep as sweep
    import workbench.tracking.mlflow_tracker as tracking

    p = PROBE

    orig_agen = models.ChatModel.agenerate

    @functools.wraps(orig_agen)
    async def agenerate(self, messages, **extra):
        t0 = now()
        try:
            return await orig_agen(self, messages, **extra)
        finally:
            p.gen_spans.append((t0, now()))

    models.ChatModel.agenerate = agenerate

    orig_build = retrieval.ChunkIndex._open_or_build

    @functools.wraps(orig_build)
    def open_or_build(self):
        t0 = now()
        out = orig_build(self)
        p.index_spans.append((t0, now(), bool(out[1])))
        return out

    retrieval.ChunkIndex._open_or_build = open_or_build

    orig_ret = sweep.Workspace.retrieve

    @functools.wraps(orig_ret)
    def retrieve(self, pipe, item):
        t0 = now()
        try:
            return orig_ret(self, pipe, item)
        finally:
            p.retrieve_spans.append((t0, now()))
            p.retrieve_s += now() - t0
            p.retrieve_n += 1

    sweep.Workspace.retrieve = retrieve

    orig_embed = emb.LocalMiniLM.embed

    @functools.wraps(orig_embed)
    def embed(self, texts):
        texts = list(texts)
        with p.lock:
            p.embed_calls += 1
            p.embedded_texts.extend(texts)
        t0 = now()
        try:
            return orig_embed(self, texts)
        finally:
            p.embed_s += now() - t0

    emb.LocalMiniLM.embed = embed

    def timed(cls, name, key, span=False):
        orig = getattr(cls, name)

        @functools.wraps(orig)
        def wrapper(*a, **k):
            t0 = now()
            try:
                return orig(*a, **k)
            finally:
                p.mlflow[key] += now() - t0
                if span:
                    p.log_spans.append((t0, now()))

        setattr(cls, name, wrapper)

    # __init__ runs on the sweep's thread (checks the URI); the logging runs in the tracking process,
    # which reports its own timings when a sweep's session closes (perf_counter is system-wide on Linux)
    timed(tracking.MlflowTracker, "__init__", "init")
    import workbench.tracking.process as tp

    orig_close = tp.TrackingSession.close

    @functools.wraps(orig_close)
    def close(self):
        try:
            return orig_close(self)
        finally:
            for method, start, end in self.timings.get("spans", []):
                p.mlflow[method] += end - start
                p.log_spans.append((start, end))

    tp.TrackingSession.close = close

    orig_score = sweep._score_cell

    @functools.wraps(orig_score)
    def score_cell(*a, **k):
        t0 = now()
        try:
            return orig_score(*a, **k)
        finally:
            d = now() - t0
            p.score_s += d
            p.score_n += 1
            p.score_max_s = max(p.score_max_s, d)

    sweep._score_cell = score_cell

    for name in ("get", "set"):
        orig = getattr(cache_mod.ResultCache, name)

        def make(orig):
            @functools.wraps(orig)
            def wrapper(self, *a, **k):
                t0 = now()
                try:
                    return orig(self, *a, **k)
                finally:
                    p.cache_s += now() - t0
                    p.cache_ops += 1

            return wrapper

        setattr(cache_mod.ResultCache, name, make(orig))

    orig_run = sweep._SweepRun.run

    @functools.wraps(orig_run)
    async def run(self, variants):
        monitor = asyncio.create_task(p.lag_monitor())
        try:
            return await orig_run(self, variants)
        finally:
            monitor.cancel()

    sweep._SweepRun.run = run
    return p
