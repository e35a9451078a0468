"""Content-addressed result caches on disk (diskcache: SQLite, safe for two processes at once).

`ResultCache` is the one diskcache wrapper: the sweep stores generations in it, `CachedEmbedder` vectors,
the judge its scores.

A key is the sha256 of the canonical JSON of everything the result depends on, so an identical
re-run makes no model calls and any change to a config field or an input misses. Secrets are never
part of a key or a value: configs only name the environment variable that holds a key.

Values are data only (JSON, or raw bytes for vectors), never pickles: a workbench home copied from
someone else must not run code. A cache is disposable: an entry that cannot be read is dropped (a miss),
a damaged database or an old pickle-format cache is moved aside and started afresh, with one warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW

from workbench.events import span
from workbench.spec import ModelConfig, content_hash

log = logging.getLogger(__name__)

# Fields that change neither the request nor the answer.
_NOT_IN_GENERATION_KEY = {"price_input_per_mtok", "price_output_per_mtok", "api_key_env"}

FORMAT = "workbench-cache/data-v1"  # written to FORMAT_FILE; a cache folder without it is an old pickle cache
FORMAT_FILE = "FORMAT"
_BYTES, _JSON = b"B", b"J"  # the first byte of every stored value says which of the two it is


def generation_key(cfg: ModelConfig, messages: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> str:
    """(model config incl. base_url and sampling parameters, the exact messages[, extra request params such
    as logprobs: only when given, so every earlier key stays the same])."""
    model = cfg.model_dump(mode="json", exclude=_NOT_IN_GENERATION_KEY)
    if cfg.provider == "local":
        from workbench.rag.local_model import GGUF_NAME

        model["runtime"] = {"gguf": GGUF_NAME, "llama_cpp_python": _version("llama_cpp_python")}
    key = {"kind": "generation/v1", "model": model, "messages": messages}
    return content_hash(key | {"extra": extra} if extra else key)


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class NotData(ValueError):
    """A stored entry that is not one of ours (a pickle, a foreign or damaged value): never decoded."""


class DataDisk(diskcache.Disk):
    """diskcache's Disk with data-only values: bytes as they are, anything else as zlib-compressed JSON.

    diskcache's own `JSONDisk` still unpickles an entry whose row says MODE_PICKLE, so a crafted database
    could run code through it; this one refuses every mode but raw and binary, and every non-raw key.
    """

    def put(self, key):
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"cache keys are strings, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise NotData("a pickled key")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if read:
            raise TypeError("ResultCache stores values, not files")
        data = _BYTES + value if isinstance(value, bytes) else _JSON + zlib.compress(
            json.dumps(value, allow_nan=True).encode("utf-8"), 1)
        return super().store(data, False, key=key)

    def fetch(self, mode, filename, value, read):
        if mode not in (MODE_RAW, MODE_BINARY) or read:
            raise NotData(f"a value stored in diskcache mode {mode} (a pickle or a file handle)")
        if _outside(filename):
            raise NotData(f"a value file outside the cache folder ({filename})")  # a crafted row reading any file
        data = super().fetch(mode, filename, value, False)
        if not isinstance(data, bytes) or not data:
            raise NotData("a value that is not bytes")
        tag, body = data[:1], data[1:]
        if tag == _BYTES:
            return body
        if tag == _JSON:
            try:
                return json.loads(zlib.decompress(body).decode("utf-8"))
            except (zlib.error, UnicodeDecodeError, ValueError) as exc:
                raise NotData(f"an unreadable JSON value ({exc})") from None
        raise NotData("a value without the workbench's format tag")

    def remove(self, file_path):
        if not _outside(file_path):  # dropping a crafted row must not delete the file it names
            super().remove(file_path)


def _outside(filename: str | None) -> bool:
    return filename is not None and (Path(filename).is_absolute() or ".." in Path(filename).parts)


def _aside(directory: Path, why: str) -> str:
    """Move a cache folder out of the way (it is disposable, but the user may want to look at it)."""
    target = directory.with_name(f"{directory.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        directory.rename(target)
    except FileNotFoundError:  # another process moved it first
        pass
    directory.mkdir(parents=True, exist_ok=True)
    return str(target)


def _write_marker(directory: Path) -> None:
    tmp = directory / f"{FORMAT_FILE}.tmp-{os.getpid()}-{threading.get_ident()}"
    tmp.write_text(FORMAT + "\n", encoding="utf-8")
    os.replace(tmp, directory / FORMAT_FILE)  # atomic: another process never reads half a marker


def _unwritable(exc: BaseException) -> bool:
    """A full, read-only or locked disk: the cache is fine, it just cannot be used now (never moved aside)."""
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, sqlite3.OperationalError)  # "database or disk is full", "readonly database", …


def open_data_cache(directory: Path, size_limit: int) -> diskcache.Cache | None:
    """A data-only diskcache at `directory`: an old pickle cache or a damaged database there is moved
    aside (one warning naming it) and an empty cache is made in its place. None (with a warning) when the
    disk cannot be written: the sweep runs without its cache rather than fail."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / FORMAT_FILE
        if not marker.is_file():
            if any(not p.name.startswith(FORMAT_FILE) for p in directory.iterdir()):
                moved = _aside(directory, "old-pickle-cache")
                log.warning("%s: a cache in the old pickle format (or of unknown format) is never read, so it "
                            "cannot run code: moved aside to %s; its entries are computed again (delete it when "
                            "you like)", directory, moved)
            _write_marker(directory)  # before the database: another process never sees one without the other
        try:
            cache = diskcache.Cache(str(directory), size_limit=size_limit, disk=DataDisk)
            cache.get("workbench: probe")  # a truncated database fails only at its first real query
        except (sqlite3.DatabaseError, NotData) as exc:
            if _unwritable(exc):
                raise
            moved = _aside(directory, "damaged")
            log.warning("%s: the cache database %s is damaged (%s): moved aside to %s and started afresh; a "
                        "cache only saves time, its entries are computed again", directory,
                        directory / "cache.db", exc, moved)
            _write_marker(directory)
            cache = diskcache.Cache(str(directory), size_limit=size_limit, disk=DataDisk)
        return cache
    except (OSError, sqlite3.OperationalError) as exc:
        log.warning("%s: cannot open the cache (%s); running without it — results are kept but not cached "
                    "(free space on that disk or check its permissions)", directory, exc)
        return None


class ResultCache:
    """The workbench's one disk cache: get/set by key with hit/miss counters; `enabled=False` is a pass-through.

    diskcache keeps it in SQLite, so threads and processes may share `directory`; it evicts the least
    recently stored entries beyond `size_limit` bytes. A stored value must not be None (None means a miss)
    and must be bytes or JSON data (dicts, lists, strings, numbers). An entry that cannot be decoded is
    deleted and counted as a miss.
    """

    def __init__(self, directory: str | Path, *, enabled: bool = True, size_limit: int = 8 * 2**30):
        self.enabled = enabled
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self.dropped = 0  # entries that were not readable data, deleted
        self._write_failed = False
        self._count_lock = threading.Lock()  # get() may run in worker threads (asyncio.to_thread)
        self._cache = open_data_cache(self.directory, size_limit) if enabled else None
        self._pending: dict[str, Any] = {}  # set_later: queued, not yet stored (guarded by _count_lock)
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        if self._cache is None:
            return None
        with self._count_lock:
            value = self._pending.get(key)
            if value is not None:  # stored later by the writer thread: already ours to read
                self.hits += 1
                return value
        with span("cache"):
            try:
                value = self._cache.get(key)
            except (NotData, OSError) as exc:  # OSError: its value file was deleted or cut
                log.warning("%s: cache entry %s is not readable data (%s): dropped, it is computed again",
                            self.directory, key[:24], exc)
                self._cache.delete(key)
                value = None
                with self._count_lock:
                    self.dropped += 1
        with self._count_lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def delete(self, key: str) -> None:
        if self._cache is not None:
            self._cache.delete(key)

    def set(self, key: str, value: Any) -> None:
        if self._cache is not None:
            with span("cache"), self._unwritable():
                self._cache.set(key, value)

    def set_later(self, key: str, value: Any) -> None:
        """`set` done by a writer thread, in batches of one transaction each: the caller (the sweep's event
        loop, once per model call) only queues it — no thread hop, no future, no wake-up back — and `get`
        answers the entry from memory until it is stored. `flush()` (and `close()`) wait until it is."""
        if self._cache is None:
            return
        with self._count_lock:
            self._pending[key] = value
        with self._writer_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_behind, name="workbench-cache-writer", daemon=True)
                self._writer.start()
        self._queue.put(key)

    def _write_behind(self) -> None:
        while True:
            keys = [self._queue.get()]
            while True:  # everything queued meanwhile goes in the same transaction
                try:
                    keys.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._count_lock:
                items = {k: self._pending[k] for k in keys if k is not None and k in self._pending}
            if items:
                try:
                    with span("cache"):
                        self.set_many(items)
                except Exception as exc:  # noqa: BLE001 - a value that cannot be stored costs its entry only
                    log.warning("%s: %d cache entries not stored (%s): they are computed again", self.directory,
                                len(items), exc)
                with self._count_lock:
                    for k, v in items.items():
                        if self._pending.get(k) is v:  # not replaced by a newer value meanwhile
                            del self._pending[k]
            if None in keys:
                return

    def flush(self) -> None:
        """Wait until every `set_later` entry is stored."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def set_many(self, items: Mapping[str, Any]) -> None:
        """Store every (key, value) in one transaction: one disk sync instead of one per entry."""
        if self._cache is not None:
            with self._unwritable(), self._cache.transact():
                for key, value in items.items():
                    self._cache.set(key, value)

    @contextlib.contextmanager
    def _unwritable(self):
        """A full disk (or a read-only one) loses a cache entry, never the result: warn once and go on."""
        try:
            yield
        except (OSError, sqlite3.OperationalError) as exc:
            if not self._write_failed:
                log.warning("%s: cannot write to the cache (%s); results are kept but not cached — free space on "
                            "that disk", self.directory, exc)
            self._write_failed = True

    def close(self) -> None:
        self.flush()
        if self._cache is not None:
            self._cache.close()
