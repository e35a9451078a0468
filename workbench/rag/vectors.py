"""What every embedder must return, checked before a vector is cached (`check_vectors`) and after it is
read back from the cache (`split_cached`).

A model or endpoint that answers NaN, infinities or rows of different widths gets one ModelError naming
it; Chroma would reject such vectors only later, after the embedding cache had stored them for good.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.errors import ModelError


def describe(embedder: Any) -> str:
    """The embedding model (and endpoint, if remote) an error should name."""
    where = getattr(embedder, "where", None)
    return f"embedding model {embedder.name!r}" + (f" at {where}" if where else "")


def check_vectors(vectors: Any, count: int, embedder: Any) -> np.ndarray:
    """`vectors` as float32 rows, or one ModelError naming the model when they are not `count` finite rows
    of one width (Chroma would reject NaN later, after the cache had stored them)."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (ValueError, TypeError):  # ragged rows
        raise ModelError(f"{describe(embedder)} returned vectors of different lengths; every vector must have "
                         "the same dimension — check the model and endpoint") from None
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] == 0:
        raise ModelError(f"{describe(embedder)} returned an array of shape {array.shape} for {count} texts; "
                         f"expected ({count}, dimension) — check the model and endpoint")
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise ModelError(f"{describe(embedder)} returned {bad.size} vector(s) with NaN or infinite values (first "
                         f"for text #{int(bad[0])} of the batch); nothing was cached — check the model and endpoint "
                         "(a broken model file or a server bug), then run again")
    return array


def split_cached(raw: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the cached values that are good vectors, the keys of those that are not), misses (None) left out.

    Good: float32 bytes of a finite, unit-length (or all-zero) row, of the width most of them share.
    Anything else was written by older code, another version or a tampered cache: it is recomputed."""
    found: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for key, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, bytes) or not value or len(value) % 4:
            bad.append(key)
            continue
        vector = np.frombuffer(value, dtype=np.float32)
        norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else float("nan")
        if abs(norm - 1.0) < 1e-3 or norm == 0.0:
            found[key] = vector
        else:
            bad.append(key)
    widths = {v.shape[0] for v in found.values()}
    if len(widths) > 1:  # keep the most common width; the others are damaged entries
        common = max(widths, key=lambda w: sum(v.shape[0] == w for v in found.values()))
        bad += [k for k, v in found.items() if v.shape[0] != common]
        found = {k: v for k, v in found.items() if v.shape[0] == common}
    return found, bad
