"""Many texts embedded in batches: the plan (longest first, sized by tokens) and who runs it.

An index build shares the machine with the sweep's model calls, so the local embedder leaves them a core
(`embeddings.session_options`). When no call is out (the sweep has run out of other work and waits for this
very index), that core is idle: a second thread then embeds batches too, on the same onnxruntime session
(its `run` is thread-safe), and steps back as soon as calls are out again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Sequence

import numpy as np

# 4 texts of 128 tokens. At 8192 onnxruntime held ~770 MB of activations; at 2048 the process still peaked ~300 MB
# above the loaded model (malloc keeps freed activations of many shapes; at 1024 ~100 MB). At 512 the vectors are
# identical and cost less CPU per text (177 SQuAD chunks: 7.0 CPU s at 2,048 tokens, 4.8 s at 512).
MAX_BATCH_TOKENS = 512
SPARE_POLL_S = 0.02  # how often the second thread looks for a spare core


def plan(texts: Sequence[str], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Batches of indexes into `texts`: longest first, so each batch pads to lengths close to its own; long texts
    in smaller batches (activation memory grows with batch x length; ~4 characters a token)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out, begin = [], 0
    while begin < len(order):
        longest = min(max_tokens, len(texts[order[begin]]) // 4 + 2)
        size = max(1, min(batch_size, MAX_BATCH_TOKENS // longest))
        out.append(order[begin : begin + size])
        begin += size
    return out


def embed_planned(batches: list[list[int]], n: int, dim: int, embed: Callable[[list[int]], np.ndarray],
                  spare_core: Callable[[], bool] | None = None) -> np.ndarray:
    """Every batch embedded (`embed(indexes)` -> their vectors) into one (n, dim) array, in input order; by this
    thread, and while `spare_core()` says so, by a second one."""
    out = np.empty((n, dim), dtype=np.float32)
    pending, lock, failed = deque(batches), threading.Lock(), []

    def take() -> list[int] | None:
        with lock:
            return pending.popleft() if pending and not failed else None

    def work(spare: bool) -> None:
        try:
            while True:
                if spare and not spare_core():
                    if not pending or failed:
                        return
                    time.sleep(SPARE_POLL_S)
                    continue
                if (idx := take()) is None:
                    return
                out[idx] = embed(idx)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread below
            failed.append(exc)

    helper = None
    if spare_core is not None and len(batches) > 1:
        helper = threading.Thread(target=work, args=(True,), name="workbench-embed-spare", daemon=True)
        helper.start()
    work(False)
    if helper is not None:
        helper.join()
    if failed:
        raise failed[0]
    return out
