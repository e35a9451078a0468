"""What every embedder must return, checked before a vector is cached or indexed: `check_vectors`.

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
