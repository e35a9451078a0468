"""Content-addressed result caches on disk (diskcache: SQLite, safe for two processes at once).

`ResultCache` is the one diskcache wrapper: the sweep stores generations in it, `CachedEmbedder` vectors.

A key is the sha256 of the canonical JSON of everything the result depends on, so an identical
re-run makes no model calls and any change to a config field or an input misses. Secrets are never
part of a key or a value: configs only name the environment variable that holds a key.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.events import span
from workbench.spec import ModelConfig, content_hash

# Fields that change neither the request nor the answer.
_NOT_IN_GENERATION_KEY = {"price_input_per_mtok", "price_output_per_mtok", "api_key_env"}


def generation_key(cfg: ModelConfig, messages: list[dict[str, Any]]) -> str:
    """(model config incl. base_url and sampling parameters, the exact messages)."""
    model = cfg.model_dump(mode="json", exclude=_NOT_IN_GENERATION_KEY)
    if cfg.provider == "local":
        from workbench.rag.local_model import GGUF_NAME

        model["runtime"] = {"gguf": GGUF_NAME, "llama_cpp_python": _version("llama_cpp_python")}
    return content_hash({"kind": "generation/v1", "model": model, "messages": messages})


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class ResultCache:
    """The workbench's one disk cache: get/set by key with hit/miss counters; `enabled=False` is a pass-through.

    diskcache keeps it in SQLite, so threads and processes may share `directory`; it evicts the least
    recently stored entries beyond `size_limit` bytes. A stored value must not be None (None means a miss).
    """

    def __init__(self, directory: str | Path, *, enabled: bool = True, size_limit: int = 8 * 2**30):
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()  # get() runs in worker threads (asyncio.to_thread)
        self._cache = None
        if enabled:
            import diskcache

            Path(directory).mkdir(parents=True, exist_ok=True)
            self._cache = diskcache.Cache(str(directory), size_limit=size_limit)

    def get(self, key: str) -> Any | None:
        if self._cache is None:
            return None
        with span("cache"):
            value = self._cache.get(key)
        with self._count_lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def set(self, key: str, value: Any) -> None:
        if self._cache is not None:
            with span("cache"):
                self._cache.set(key, value)

    def set_many(self, items: Mapping[str, Any]) -> None:
        """Store every (key, value) in one transaction: one disk sync instead of one per entry."""
        if self._cache is not None:
            with self._cache.transact():
                for key, value in items.items():
                    self._cache.set(key, value)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
