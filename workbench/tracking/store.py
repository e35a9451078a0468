"""A local sqlite MLflow store: its cheap checks before a sweep, its folder, its atomic creation, its lock.

A tracking server (http://…) needs none of this: it owns and serialises its own database.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from workbench.errors import TrackingError

log = logging.getLogger(__name__)


def sqlite_path(uri: str) -> Path | None:
    """The file of a local sqlite store (sqlite:///mlruns/mlflow.db), None for any other URI."""
    return Path(uri.removeprefix("sqlite:///")).expanduser() if uri.startswith("sqlite:///") else None


def prepare_local_store(uri: str) -> None:
    """sqlite:///mlruns/mlflow.db needs its folder to exist before MLflow opens it."""
    if (path := sqlite_path(uri)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def require_existing_store(uri: str) -> None:
    """Reading (export, load, the UI's Load) never creates a store: a mistyped URI such as
    sqlite:///mlrun/mlflow.db would otherwise open a new empty one and say "no sweep" (or leave it behind)."""
    if uri.startswith("file:"):
        path: Path | None = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser()
        exists = path.is_dir()
    else:
        path = sqlite_path(uri)
        exists = path is not None and path.is_file()
    if path is None or exists:
        return  # a tracking server, or a store that is there
    near = sorted(str(p) for p in path.parent.glob("*.db")) if path.parent.is_dir() else []
    hint = f" The folder holds {', '.join(near[:3])}." if near else ""
    raise TrackingError(
        f"no MLflow store at {path.resolve()} (tracking URI {uri!r}); reading never creates one.{hint} Give the "
        "store the sweep was logged to as --tracking-uri (`workbench run` printed it; the default "
        "sqlite:///mlruns/mlflow.db is relative to the folder it ran in; an absolute path takes four slashes: "
        "sqlite:////abs/mlflow.db)."
    )


def create_sqlite_store_atomically(uri: str) -> None:
    """A new sqlite store is migrated under a temporary name and renamed into place when complete.

    MLflow's schema migrations are many separate statements: a process killed halfway left a store that
    no later run could open ("table ... already exists"). Call with the store lock held.
    """
    path = sqlite_path(uri)
    if path is None or path.exists():
        return
    import mlflow

    partial = path.with_name(f"{path.name}.creating-{os.getpid()}")
    for leftover in path.parent.glob(f"{path.name}.creating-*"):  # from a process killed while creating it
        leftover.unlink(missing_ok=True)
    try:
        mlflow.MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)  # creates and migrates it
        os.replace(partial, path)
    except Exception:  # a full disk mid-migration: leave no half store behind for the next run to trip on
        partial.unlink(missing_ok=True)
        raise


def check_sqlite_store(uri: str) -> None:
    """The cheap checks of a local sqlite store that can run before anything is written."""
    path = sqlite_path(uri)
    assert path is not None, uri
    problem = None
    if path.is_dir():
        problem = "it is a directory"
    elif path.exists():
        with path.open("rb") as fh:
            if fh.read(16) not in (b"SQLite format 3\x00", b""):
                problem = "it is not an SQLite database"
    else:
        parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
            problem = f"its folder cannot be created under {parent}"
    if problem:
        raise TrackingError(
            f"cannot use MLflow tracking URI {uri!r}: {problem}. Point tracking.tracking_uri (or --tracking-uri) "
            "at a new or existing sqlite file, e.g. sqlite:///mlruns/mlflow.db, or at a server (http://host:5000)."
        )


STORE_LOCK_TIMEOUT = 300.0  # seconds: a store creation or experiment lookup takes well under one
STORE_LOCK_NOTICE = 5.0  # after this long waiting, say who holds the lock


@contextlib.contextmanager
def store_lock(uri: str, timeout: float | None = None):
    """Held while a store is created and its experiment looked up: two sweeps starting at once on a new
    sqlite store would both run its schema migrations (and both create the experiment).

    Waits at most `timeout` seconds (STORE_LOCK_TIMEOUT): after a few seconds it warns once, naming the
    lock file and the holder's pid, and when the time is up it raises one TrackingError saying the same."""
    if (path := sqlite_path(uri)) is None:
        yield  # a tracking server serialises its own database
        return
    from filelock import FileLock, Timeout

    timeout = STORE_LOCK_TIMEOUT if timeout is None else timeout
    lock_file = Path(f"{path}.lock")
    owner = lock_file.with_name(lock_file.name + ".pid")  # filelock truncates the lock file itself on open
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=min(STORE_LOCK_NOTICE, timeout))
    except Timeout:
        log.warning("waiting for the MLflow store lock %s, held by %s (up to %.0f s)", lock_file, _holder(owner), timeout)
        try:
            lock.acquire(timeout=max(0.0, timeout - STORE_LOCK_NOTICE))
        except Timeout:
            raise TrackingError(
                f"the MLflow store lock {lock_file} is held by {_holder(owner)} and was not released within "
                f"{timeout:.0f} s; wait for that process to finish (or stop it), or, if no workbench process is "
                f"running, delete {lock_file}"
            ) from None
    try:
        with contextlib.suppress(OSError):
            owner.write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def _holder(owner: Path) -> str:
    try:
        pid = int(owner.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return "another process (pid unknown)"
    return f"process {pid}"
