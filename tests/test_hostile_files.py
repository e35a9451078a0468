"""Hostile files and stores (issue 13): real symlinks, FIFOs, sockets, crafted pickles, truncated databases.

Every case ends in one clear error naming the thing and the fix, or a warning plus a correct result:
never a traceback, a hang (each test is bounded by pytest-timeout), a leak or a poisoned store.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.data.corpus import load_corpus
from workbench.data.evalset import load_eval
from workbench.errors import DataError, ModelError, StorageError, TrackingError
from workbench.rag.cache import FORMAT_FILE, ResultCache
from workbench.rag.embeddings import CachedEmbedder, OpenAIEmbedder
from workbench.runner.records import SweepRecord, write_atomically
from workbench.spec import CorpusSource, EmbeddingConfig, EvalSource
from workbench.testing.fake_endpoint import LatencyEndpoint
from workbench.tracking.store import store_lock

pytestmark = pytest.mark.timeout(120)

SECRET = "sk-wb-HOSTILE-0a1b2c3d4e5f60718293"


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


# ---------------------------------------------------------------- folder corpora: links and special files


def _outside_secret(tmp: Path) -> Path:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keys.txt").write_text(f"OPENAI_API_KEY={SECRET}\n")
    return outside


def _link_to_file(docs: Path, tmp: Path) -> str:
    (docs / "env.txt").symlink_to(_outside_secret(tmp) / "keys.txt")
    return "env.txt"


def _link_to_environ(docs: Path, tmp: Path) -> str:
    (docs / "environ.txt").symlink_to("/proc/self/environ")
    return "environ.txt"


def _link_to_folder(docs: Path, tmp: Path) -> str:
    (docs / "more").symlink_to(_outside_secret(tmp), target_is_directory=True)
    return "more"


def _fifo(docs: Path, tmp: Path) -> str:
    os.mkfifo(docs / "pipe.txt")  # opening it for reading would block until someone writes
    return "pipe.txt"


def _socket(docs: Path, tmp: Path) -> str:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(docs / "s.md"))
    sock.close()
    return "s.md"


def _dangling(docs: Path, tmp: Path) -> str:
    (docs / "gone.txt").symlink_to(tmp / "does-not-exist.txt")
    return "gone.txt"


FOLDER_CASES = {
    # case: (make the hostile entry, words the warning must contain)
    "link to a file outside": (_link_to_file, ["symbolic link", "follow_symlinks"]),
    "link to /proc/self/environ": (_link_to_environ, ["symbolic link", "/proc/self/environ"]),
    "link to a folder outside": (_link_to_folder, ["symbolic link", "follow_symlinks"]),
    "a FIFO": (_fifo, ["named pipe (FIFO)", "not a regular file"]),
    "a socket": (_socket, ["socket", "not a regular file"]),
    "a dangling link": (_dangling, ["symbolic link"]),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", FOLDER_CASES)
def test_folder_corpus_skips_links_and_special_files_with_one_warning(tmp_path, caplog, case):
    make, words = FOLDER_CASES[case]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("Denver won Super Bowl 50.")
    name = make(docs, tmp_path)
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(CorpusSource(format="folder", path=str(docs)))
    assert [d.id for d in corpus] == ["good.txt"]
    assert SECRET not in "".join(d.text for d in corpus) and "PATH=" not in "".join(d.text for d in corpus)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1  # once, listing every skipped path
    assert str(docs / name) in warned[0] and all(w in warned[0] for w in words), warned[0]


def test_follow_symlinks_is_an_explicit_opt_in_and_survives_a_link_loop(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.txt").write_text("Denver won Super Bowl 50.")
    (docs / "shared.md").symlink_to(_outside_secret(tmp_path) / "keys.txt")
    (docs / "sub" / "loop").symlink_to(docs, target_is_directory=True)  # os.walk would follow it forever
    corpus = load_corpus(CorpusSource(format="folder", path=str(docs), follow_symlinks=True))
    assert sorted(d.id for d in corpus) == ["good.txt", "shared.md"]
    assert SECRET in corpus.get("shared.md").text  # asked for: read
    assert SECRET not in "".join(d.text for d in load_corpus(CorpusSource(format="folder", path=str(docs))))


SINGLE_FILE_CASES = {
    "jsonl corpus": lambda p: load_corpus(CorpusSource(format="jsonl", path=str(p))),
    "squad corpus": lambda p: load_corpus(CorpusSource(format="squad", path=str(p))),
    "jsonl eval": lambda p: load_eval(EvalSource(format="jsonl", path=str(p))),
    "csv eval": lambda p: load_eval(EvalSource(format="csv", path=str(p))),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", SINGLE_FILE_CASES)
def test_a_fifo_given_as_the_data_file_is_one_clear_error_not_a_hang(tmp_path, case):
    fifo = tmp_path / "data.file"
    os.mkfifo(fifo)
    with pytest.raises(DataError) as err:
        SINGLE_FILE_CASES[case](fifo)
    assert str(fifo) in str(err.value) and "named pipe (FIFO)" in str(err.value) and "regular file" in str(err.value)


# ---------------------------------------------------------------- lone surrogates


def _jsonl_corpus(tmp: Path, line: str):
    path = tmp / "c.jsonl"
    path.write_text('{"id": "ok", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    return path, lambda: load_corpus(CorpusSource(format="jsonl", path=str(path)))


def _eval_jsonl(tmp: Path, line: str):
    path = tmp / "e.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    return path, lambda: load_eval(EvalSource(format="jsonl", path=str(path)))


def _squad(tmp: Path, context: str):
    path = tmp / "s.json"
    path.write_text('{"data": [{"title": "T", "paragraphs": [{"context": "' + context + '", "qas": [{"id": "q1", '
                    '"question": "Who \\udc00?", "answers": [{"text": "x", "answer_start": 0}]}]}]}]}', encoding="utf-8")
    return path, lambda: (load_corpus(CorpusSource(format="squad", path=str(path))),
                          load_eval(EvalSource(format="squad", path=str(path))))


SURROGATE_CASES = {
    # case: (write the file, which line the warning names)
    "document text": (lambda t: _jsonl_corpus(t, '{"id": "d", "text": "half an emoji \\ud83d here"}'), "line 2"),
    "document id and title": (lambda t: _jsonl_corpus(t, '{"id": "\\ud800", "title": "\\udfff", "text": "t"}'), "line 2"),
    "question": (lambda t: _eval_jsonl(t, '{"id": "q", "question": "who \\ud83d?", "reference_answers": ["a"]}'),
                 "line 1"),
    "squad context and question": (lambda t: _squad(t, "ctx \\ud83d"), "s.json"),
}


@pytest.mark.parametrize("case", SURROGATE_CASES)
def test_a_lone_surrogate_becomes_u_fffd_with_a_warning_naming_the_file(tmp_path, caplog, case):
    write, where = SURROGATE_CASES[case]
    path, load = write(tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = load()
    text = repr(loaded)
    assert "\ufffd" in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    for part in loaded if isinstance(loaded, tuple) else (loaded,):
        assert getattr(part, "digest", "")  # hashing the content (UTF-8) works now
    assert str(path) in warnings_of(caplog) and where in warnings_of(caplog) and "U+FFFD" in warnings_of(caplog)


def test_a_valid_surrogate_pair_is_an_emoji_and_no_warning(tmp_path, caplog):
    _, load = _jsonl_corpus(tmp_path, '{"id": "d", "text": "party \\ud83c\\udf89"}')
    with caplog.at_level(logging.WARNING):
        corpus = load()
    assert corpus.get("d").text == "party \U0001f389" and warnings_of(caplog) == ""


# ---------------------------------------------------------------- pickles in caches never run

PAYLOAD = """
import os, pickle, sys
class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
"""

CACHE_NAMES = ("generations", "embeddings", "judge")  # <home>/cache/<name>, every ResultCache the product opens


def plant_old_pickle_cache(directory: Path, key: str, marker: Path) -> None:
    """A cache as the old code wrote it (diskcache's default pickle Disk), with a payload under `key`."""
    script = PAYLOAD + """
import diskcache
cache = diskcache.Cache(sys.argv[1])
cache.set(sys.argv[3], Boom())
cache.close()
"""
    subprocess.run([sys.executable, "-c", script, str(directory), str(marker), key], check=True)
    assert not marker.exists()


def plant_pickle_row(directory: Path, key: str, marker: Path) -> None:
    """A crafted row in a current data-only cache: the row says MODE_PICKLE (4) and holds the payload."""
    script = PAYLOAD + """
import sqlite3
db = sqlite3.connect(sys.argv[1] + "/cache.db")
db.execute("UPDATE Cache SET mode = 4, value = ?, filename = NULL WHERE key = ?",
           (pickle.dumps(Boom()), sys.argv[3]))
db.commit()
"""
    subprocess.run([sys.executable, "-c", script, str(directory), str(marker), key], check=True)


@pytest.mark.parametrize("name", CACHE_NAMES)
def test_an_old_pickle_cache_is_moved_aside_never_unpickled(tmp_path, caplog, name):
    directory, marker = tmp_path / "home" / "cache" / name, tmp_path / "PWNED"
    plant_old_pickle_cache(directory, "k1", marker)
    with caplog.at_level(logging.WARNING):
        cache = ResultCache(directory)
        assert cache.get("k1") is None
        cache.set("k1", {"text": "fresh"})
        assert cache.get("k1") == {"text": "fresh"}
        cache.close()
    assert not marker.exists()
    aside = [p for p in directory.parent.iterdir() if p.name.startswith(f"{name}.old-pickle-cache-")]
    assert len(aside) == 1 and (aside[0] / "cache.db").exists()  # kept for the user, never read
    assert str(directory) in warnings_of(caplog) and "never read" in warnings_of(caplog)
    assert ResultCache(directory).get("k1") == {"text": "fresh"}  # no second move: the format is marked


@pytest.mark.parametrize("name", CACHE_NAMES)
def test_a_crafted_pickle_row_in_a_data_cache_is_dropped_never_unpickled(tmp_path, caplog, name):
    directory, marker = tmp_path / "home" / "cache" / name, tmp_path / "PWNED"
    cache = ResultCache(directory)
    cache.set("k1", {"text": "honest"})
    cache.set("k2", 0.75)
    cache.close()
    plant_pickle_row(directory, "k1", marker)
    with caplog.at_level(logging.WARNING):
        again = ResultCache(directory)
        assert again.get("k1") is None and again.get("k2") == 0.75
    assert not marker.exists() and again.dropped == 1
    assert "k1" in warnings_of(caplog) and "dropped" in warnings_of(caplog)
    again.set("k1", {"text": "recomputed"})
    assert again.get("k1") == {"text": "recomputed"}
    again.close()


def test_a_crafted_row_pointing_at_a_file_outside_the_cache_is_not_read(tmp_path, caplog):
    outside = tmp_path / "keys.txt"
    outside.write_bytes(b"B" + SECRET.encode())  # even with the workbench's own format tag
    directory = tmp_path / "cache" / "embeddings"
    cache = ResultCache(directory)
    cache.set("k", b"\0" * 16)
    cache.close()
    db = sqlite3.connect(directory / "cache.db")
    db.execute("UPDATE Cache SET mode = 2, value = NULL, filename = ? WHERE key = 'k'", (f"../../{outside.name}",))
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING):
        again = ResultCache(directory)
        assert again.get("k") is None and again.dropped == 1
    assert "outside the cache folder" in warnings_of(caplog) and outside.exists()


# ---------------------------------------------------------------- damaged cache databases

def _truncate_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _zero_bytes(db: Path) -> None:
    os.truncate(db, 0)


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database" * 100)


def _header_only(db: Path) -> None:
    os.truncate(db, 100)


DAMAGE = {"truncated to half": _truncate_half, "cut after the header": _header_only, "0 bytes": _zero_bytes,
          "garbage": _garbage}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_database_is_moved_aside_and_rebuilt(tmp_path, caplog, damage):
    directory = tmp_path / "cache" / "generations"
    cache = ResultCache(directory)
    cache.set_many({f"k{i}": {"text": "x" * 500, "i": i} for i in range(300)})
    cache.close()
    for extra in ("cache.db-wal", "cache.db-shm"):
        (directory / extra).unlink(missing_ok=True)
    DAMAGE[damage](directory / "cache.db")
    with caplog.at_level(logging.WARNING):
        again = ResultCache(directory)
        misses = [again.get(f"k{i}") for i in range(300)]
        again.set("k1", {"text": "recomputed"})
        assert again.get("k1") == {"text": "recomputed"}
        again.close()
    # a cache is disposable: whatever survived is correct data, the rest is a miss
    assert all(v is None or v == {"text": "x" * 500, "i": i} for i, v in enumerate(misses))
    if damage != "0 bytes":  # sqlite takes an empty file for a new database: nothing to say
        assert str(directory / "cache.db") in warnings_of(caplog) and "damaged" in warnings_of(caplog)


# ---------------------------------------------------------------- embeddings: NaN never reaches the cache


@pytest.fixture(scope="module")
def endpoint():
    with LatencyEndpoint(latency=0.0, dim=16) as ep:
        yield ep


def _embedder(endpoint, home: Path) -> CachedEmbedder:
    cfg = EmbeddingConfig(provider="openai", model="latency-endpoint", base_url=endpoint.base_url, batch_size=8)
    return CachedEmbedder(OpenAIEmbedder(cfg, max_retries=0), cfg, home / "cache" / "embeddings")


def test_nan_vectors_are_one_clear_error_and_never_cached(tmp_path, endpoint):
    texts = ["Denver won.", "Carolina lost.", "Levi's Stadium."]
    endpoint.configure(fail_rate=1.0, faults=["nan"])
    try:
        with pytest.raises(ModelError) as err:
            _embedder(endpoint, tmp_path).embed(texts)
    finally:
        endpoint.configure(fail_rate=0.0, faults=["500"])
    message = str(err.value)
    assert "'latency-endpoint'" in message and endpoint.base_url in message and "NaN" in message
    endpoint.reset_stats()
    again = _embedder(endpoint, tmp_path)  # the next run, same cache folder: not poisoned
    vectors = again.embed(texts)
    assert np.isfinite(vectors).all() and vectors.shape == (3, 16)
    assert again.misses == 3 and endpoint.stats()["embedding_inputs"] == 3


def _nan_bytes(v: np.ndarray):
    return np.full_like(v, np.nan).tobytes()


POISON = {
    # case: what an earlier (older, buggy or tampered) run left under a text's key
    "NaN vector": _nan_bytes,
    "infinite vector": lambda v: np.full_like(v, np.inf).tobytes(),
    "wrong width": lambda v: (np.ones(8, np.float32) / np.float32(np.sqrt(8))).tobytes(),
    "not a multiple of 4 bytes": lambda v: v.tobytes()[:-3],
    "not unit length": lambda v: (v * 7).tobytes(),
    "a JSON value": lambda v: [1.0, 2.0],
}


@pytest.mark.parametrize("case", POISON)
def test_a_poisoned_cached_vector_is_dropped_and_recomputed(tmp_path, endpoint, caplog, case):
    texts = ["Denver won.", "Carolina lost.", "Levi's Stadium."]
    first = _embedder(endpoint, tmp_path)
    good = first.embed(texts)
    first._cache.set(first.key(texts[1]), POISON[case](good[1]))
    first.close()
    endpoint.reset_stats()
    again = _embedder(endpoint, tmp_path)
    with caplog.at_level(logging.WARNING):
        vectors = again.embed(texts)
    np.testing.assert_allclose(vectors, good, rtol=1e-6)
    assert (again.hits, again.misses) == (2, 1) and endpoint.stats()["embedding_inputs"] == 1
    assert "dropped" in warnings_of(caplog)
    assert np.isfinite(_embedder(endpoint, tmp_path).embed(texts)).all()  # and stored right this time


# ---------------------------------------------------------------- cells.jsonl damage

GOOD = {"variant_hash": "v1", "question_id": "q1", "answer": "Denver"}
BAD_LINES = {
    "an empty object": "{}",
    "a list": "[1, 2]",
    "a number as the variant": '{"variant_hash": 1, "question_id": "q2"}',
    "malformed JSON mid-file": '{"variant_hash": "v1", "question_',
    "a string": '"hello"',
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_line_of_cells_jsonl_that_is_not_a_cell_is_skipped_with_a_warning(tmp_path, caplog, case):
    record = SweepRecord(tmp_path / "sweeps" / "s1")
    record.directory.mkdir(parents=True)
    second = {**GOOD, "question_id": "q3"}
    record.cells_path.write_text(json.dumps(GOOD) + "\n" + BAD_LINES[case] + "\n" + json.dumps(second) + "\n")
    with caplog.at_level(logging.WARNING):
        rows = record.cells()
    assert rows == [GOOD, second]  # the damaged cell is not finished: it runs again
    assert str(record.cells_path) in warnings_of(caplog) and "line 2" in warnings_of(caplog)


def test_a_torn_last_line_is_still_ignored_silently(tmp_path, caplog):
    record = SweepRecord(tmp_path / "s1")
    record.directory.mkdir()
    record.cells_path.write_text(json.dumps(GOOD) + '\n{"variant_hash": "v1", "quest')
    with caplog.at_level(logging.WARNING):
        assert record.cells() == [GOOD]
    assert warnings_of(caplog) == ""


# ---------------------------------------------------------------- the store lock

HOLDER = """
import os, sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1] + ".lock")
lock.acquire()
open(sys.argv[1] + ".lock.pid", "w").write(str(os.getpid()))
print("held", flush=True)
time.sleep(60)
"""


def test_a_held_store_lock_is_a_timeout_naming_the_lock_file_and_holder(tmp_path, caplog):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING), pytest.raises(TrackingError) as err:
            with store_lock(f"sqlite:///{db}", timeout=1.0):
                pass
        assert time.monotonic() - started < 10
        message = str(err.value)
        assert f"{db}.lock" in message and f"process {holder.pid}" in message and "delete" in message
    finally:
        holder.kill()
        holder.wait()
    with store_lock(f"sqlite:///{db}", timeout=5.0):  # the holder is gone: the lock is free again
        assert (db.parent / "mlflow.db.lock.pid").read_text().strip() == str(os.getpid())
    assert not (db.parent / "mlflow.db.lock.pid").exists()


# ---------------------------------------------------------------- disk full


@pytest.fixture
def full_disk(tmp_path):
    """A real 1 MiB tmpfs, mounted (the tests run as root); `_fill` fills it up."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")  # needs root
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> None:
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC: the disk is full now
    finally:
        os.close(fd)


def test_disk_full_writing_the_sweep_status_is_one_error_and_no_temp_file(full_disk):
    record = SweepRecord(full_disk / "sweeps" / "s1")
    record.directory.mkdir(parents=True)
    _fill(full_disk)
    with pytest.raises(StorageError) as err:
        record.write_status(status="FINISHED", notes="x" * 100_000)
    assert str(err.value).startswith(f"disk full writing {record.directory / 'status.json'}")
    assert sorted(p.name for p in record.directory.iterdir()) == []  # no 0-byte temporary left


def test_disk_full_loses_a_cache_entry_never_the_result(full_disk, caplog):
    cache = ResultCache(full_disk / "cache")
    _fill(full_disk)
    with caplog.at_level(logging.WARNING):
        cache.set("big", {"text": "y" * 200_000})
        cache.set_many({"a": "z" * 200_000})
    assert cache.get("big") is None
    assert "cannot write to the cache" in warnings_of(caplog) and len(caplog.records) == 1
    cache.close()


def test_a_cache_that_cannot_even_be_opened_on_a_full_disk_is_skipped_not_moved(full_disk, caplog):
    _fill(full_disk)
    with caplog.at_level(logging.WARNING):
        cache = ResultCache(full_disk / "cache")
        cache.set("k", {"text": "answer"})
        assert cache.get("k") is None  # runs without a cache: nothing raised
    assert "cannot open the cache" in warnings_of(caplog)
    assert not [p for p in full_disk.iterdir() if ".damaged-" in p.name]  # a full disk is not damage


# ---------------------------------------------------------------- whole sweeps (slow: MLflow, a helper process)

SWEEP = """
import json, sys
from workbench.runner.sweep import run_sweep
results = run_sweep(json.loads(sys.argv[1]), progress=False, **json.loads(sys.argv[2]))
print(json.dumps({"sweep_id": results.sweep_id, "notes": results.notes, "rows": len(results.rows),
                  "model_calls": results.stats.get("model_calls"), "status": results.status}))
"""


def folder_spec(tmp: Path, docs: Path, **extra) -> dict:
    from conftest import small_spec

    questions = tmp / "questions.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "reference_answers": [a],
                                             "relevant_ids": [f"d{i}.txt"]}) + "\n"
                                 for i, (q, a) in enumerate([("Who won Super Bowl 50?", "Denver Broncos"),
                                                             ("Where was it played?", "Levi's Stadium")])))
    spec = small_spec(tmp, retrieval=[{"kind": "bm25", "k": 2}])
    del spec["space"]["model"]
    spec["stage"] = "retrieve"
    spec["data"] = {"corpus": {"format": "folder", "path": str(docs)}, "eval": {"format": "jsonl", "path": str(questions)}}
    return {**spec, **extra}


def make_docs(tmp: Path) -> Path:
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "d0.txt").write_text("The Denver Broncos won Super Bowl 50, beating the Carolina Panthers.")
    (docs / "d1.txt").write_text("Super Bowl 50 was played at Levi's Stadium in Santa Clara.")
    return docs


def run_in_subprocess(spec: dict, env: dict | None = None, **kwargs) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", SWEEP, json.dumps(spec), json.dumps(kwargs)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_link_to_the_environment_leaks_the_key_nowhere(tmp_path):
    docs = make_docs(tmp_path)
    (docs / "env.txt").symlink_to("/proc/self/environ")  # the sweep process's own environment
    (docs / "fifo.txt").unlink(missing_ok=True)
    os.mkfifo(docs / "fifo.txt")
    out, text = run_in_subprocess(folder_spec(tmp_path, docs), env={"WB_HOSTILE_KEY": SECRET})
    assert out["status"] == "FINISHED" and out["rows"] == 2
    assert "env.txt" in text and "symbolic link" in text and "fifo.txt" in text  # said once what was skipped
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "cells.jsonl" for p in written) and any(p.suffix == ".db" for p in written)
    assert any(p.name == "eval_results.json" for p in written)
    assert [str(p) for p in written if SECRET.encode() in p.read_bytes()] == []
    assert SECRET not in text


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_finished_sweep_shortcut_checks_artifacts_and_damaged_cells(tmp_path):
    import shutil

    docs = make_docs(tmp_path)
    spec = folder_spec(tmp_path, docs)
    first, _ = run_in_subprocess(spec)
    same, _ = run_in_subprocess(spec)
    assert same["sweep_id"] == first["sweep_id"] and any("identical" in n for n in same["notes"])
    # a cell of its cells.jsonl replaced by `{}`: a warning naming file and line, that cell runs again
    cells = tmp_path / "home" / "sweeps" / first["sweep_id"] / "cells.jsonl"
    lines = cells.read_text().splitlines(keepends=True)
    cells.write_text(lines[0] + "{}\n")
    damaged, text = run_in_subprocess(spec)
    assert f"{cells}: skipped 1 line(s)" in text and "line 2" in text
    assert damaged["sweep_id"] != first["sweep_id"] and damaged["rows"] == 2 and damaged["status"] == "FINISHED"
    # the artifact folder deleted: the store still lists FINISHED runs, but they are not returned as finished
    shutil.rmtree(tmp_path / "mlruns" / "artifacts")
    rerun, _ = run_in_subprocess(spec)
    assert rerun["sweep_id"] != damaged["sweep_id"] and not any("identical" in n for n in rerun["notes"])
    assert rerun["rows"] == 2 and list((tmp_path / "mlruns" / "artifacts").rglob("eval_results.json"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_crafted_pickles_in_a_copied_home_never_run_during_a_sweep(tmp_path):
    from conftest import small_spec

    marker = tmp_path / "PWNED"
    with LatencyEndpoint(latency=0.0) as ep:
        spec = small_spec(tmp_path, retrieval=[{"kind": "bm25", "k": 2}])
        spec["data"]["eval"]["limit"] = 3
        spec["space"]["model"] = [{"provider": "openai", "model": "latency-endpoint", "base_url": ep.base_url,
                                   "max_tokens": 16}]
        spec["tracking"] = {"enabled": False}
        first, _ = run_in_subprocess(spec)
        home = tmp_path / "home" / "cache" / "generations"
        keys = [k for (k,) in sqlite3.connect(home / "cache.db").execute("SELECT key FROM Cache")]
        assert len(keys) == 3
        # the same home, tampered: every cached generation's row now holds a pickle that runs a command
        for key in keys:
            plant_pickle_row(home, key, marker)
        ep.reset_stats()
        tampered, text = run_in_subprocess(spec, resume=False)  # a new sweep: every answer from the cache
        assert not marker.exists() and "dropped" in text
        assert tampered["rows"] == 3 and ep.stats()["chat_calls"] == 3  # recomputed, same answers
        # an old pickle-format cache copied in: moved aside, never read
        import shutil

        shutil.rmtree(home)
        for key in keys:
            plant_old_pickle_cache(home, key, marker)
        again, text = run_in_subprocess(spec, resume=False)
        assert not marker.exists() and "old pickle format" in text and again["rows"] == 3


# ---------------------------------------------------------------- damaged Chroma files (a cache: rebuilt)

SQUAD = Path(__file__).resolve().parents[1] / "experiments/data/squad-super-bowl-50/dev-v1.1-super-bowl-50.json"
BUILD = """
import sys
from workbench.data.corpus import load_corpus
from workbench.rag.chunking import chunk_corpus
from workbench.rag.embeddings import CachedEmbedder, OpenAIEmbedder
from workbench.rag.retrieval import ChunkIndex, chroma_client
from workbench.spec import ChunkingConfig, CorpusSource, EmbeddingConfig
corpus = load_corpus(CorpusSource(format="squad", path=sys.argv[1]))
cfg = EmbeddingConfig(provider="openai", model="latency-endpoint", base_url=sys.argv[3], batch_size=64)
index = ChunkIndex("wb-hostile", chunk_corpus(corpus, ChunkingConfig(size=30, overlap=0)), OpenAIEmbedder(cfg), chroma_client(sys.argv[2]),
                   dense=False)
assert index.ensure_dense()
"""


def _index(endpoint, chroma: Path):
    from workbench.data.corpus import load_corpus
    from workbench.rag.chunking import chunk_corpus
    from workbench.rag.retrieval import ChunkIndex, chroma_client
    from workbench.spec import ChunkingConfig

    CHUNKS = ChunkingConfig(size=30, overlap=0)  # >1,000 chunks: Chroma writes its HNSW files past 1,000

    corpus = load_corpus(CorpusSource(format="squad", path=str(SQUAD)))
    cfg = EmbeddingConfig(provider="openai", model="latency-endpoint", base_url=endpoint.base_url, batch_size=64)
    return ChunkIndex("wb-hostile", chunk_corpus(corpus, CHUNKS), OpenAIEmbedder(cfg), chroma_client(chroma),
                      dense=False)


def _hnsw(chroma: Path, name: str) -> Path:
    (found,) = list(chroma.glob(f"*/{name}"))
    return found


CHROMA_DAMAGE = {
    # case: (damage the built folder, what the warning names)
    "chroma.sqlite3 truncated": (lambda c: os.truncate(c / "chroma.sqlite3", 20_000), "chroma.sqlite3"),
    "chroma.sqlite3 garbage": (lambda c: (c / "chroma.sqlite3").write_bytes(b"\0garbage" * 5000), "chroma.sqlite3"),
    # hnswlib reads these unchecked: searches raised, found nothing, or the process died of a double free
    "HNSW header truncated": (lambda c: os.truncate(_hnsw(c, "header.bin"), 10), "header.bin is cut short"),
    "HNSW data truncated": (lambda c: os.truncate(_hnsw(c, "data_level0.bin"), 1000), "data_level0.bin is cut short"),
    "HNSW link lengths truncated": (lambda c: os.truncate(_hnsw(c, "length.bin"), 100), "length.bin is cut short"),
}


@pytest.fixture(scope="module")
def built_chroma(endpoint, tmp_path_factory) -> Path:
    """One >1,000-chunk index built (and closed) in a subprocess, for every case to damage a copy of: the
    build is ~13 s; the cases differ only in the damage."""
    chroma = tmp_path_factory.mktemp("built") / "chroma"
    subprocess.run([sys.executable, "-c", BUILD, str(SQUAD), str(chroma), endpoint.base_url], check=True, timeout=150)
    return chroma


@pytest.mark.slow  # one >1,000-chunk index built in a subprocess (~13 s), rebuilt in each case
@pytest.mark.timeout(200)
@pytest.mark.parametrize("case", CHROMA_DAMAGE)
def test_damaged_chroma_files_are_detected_named_and_rebuilt(tmp_path, endpoint, built_chroma, caplog, case):
    from workbench.spec import RetrievalConfig

    chroma = tmp_path / "home" / "chroma"
    shutil.copytree(built_chroma, chroma)  # a fresh copy of the closed build: each case damages its own
    damage, named = CHROMA_DAMAGE[case]
    damage(chroma)
    with caplog.at_level(logging.WARNING):
        index = _index(endpoint, chroma)
        built = index.ensure_dense()
    assert len(index.chunks) > 1000
    for i in (0, 5, len(index.chunks) - 1):
        hits = index.search([index.chunks[i].text], RetrievalConfig(kind="dense", k=3))[0]
        assert len(hits) == 3 and hits[0].chunk.id == index.chunks[i].id  # correct results, not an empty list
    assert built is True  # rebuilt from the corpus
    assert named in warnings_of(caplog) and ("damaged" in warnings_of(caplog))
