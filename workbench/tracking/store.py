"""A local sqlite MLflow store: its cheap checks before a sweep, its folder, its atomic creation, its lock.

A tracking server (http://…) needs none of this: it owns and serialises its own database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

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
    partial = path.with_name(f"{path.name}.creating-{os.getpid()}")
    for leftover in path.parent.glob(f"{path.name}.creating-*"):  # from a process killed while creating it
        leftover.unlink(missing_ok=True)
    try:
        if not _from_template(partial):
            import mlflow

            mlflow.MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)  # creates and migrates it
            _keep_as_template(partial)
        os.replace(partial, path)
    except Exception:  # a full disk mid-migration: leave no half store behind for the next run to trip on
        partial.unlink(missing_ok=True)
        raise
    use_wal(path)


def empty_store_template() -> Path:
    """A freshly migrated, empty store of the installed MLflow version, kept in the user's cache: a new
    store is a copy of it (milliseconds) instead of MLflow's ~100 schema migrations (seconds, before the
    first trace of a sweep can be written)."""
    from importlib.metadata import version

    from platformdirs import user_cache_path

    return user_cache_path("workbench") / f"mlflow-{version('mlflow')}-empty.db"


def _from_template(partial: Path) -> bool:
    """Copy the template to `partial` with its Default experiment where MLflow would have put it; False
    when there is no usable template (the store is then migrated as usual)."""
    template = empty_store_template()
    try:
        with template.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        shutil.copyfile(template, partial)
        with contextlib.closing(sqlite3.connect(partial, timeout=5)) as db, db:
            now = int(time.time() * 1000)
            db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                       "WHERE experiment_id = 0", (str(Path("mlruns").resolve() / "0"), now, now))
        return True
    except (OSError, sqlite3.Error):
        partial.unlink(missing_ok=True)
        return False


def _keep_as_template(store: Path) -> None:
    """Best effort: a store MLflow just created and migrated (nothing logged yet) becomes the template."""
    template = empty_store_template()
    spare = template.with_name(f"{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store, spare)
        os.replace(spare, template)  # whole or not at all, whoever else is writing one
    except OSError:
        spare.unlink(missing_ok=True)


def use_wal(path: Path) -> None:
    """Put a new store in write-ahead-log mode (it stays so): a commit is one append instead of a rollback
    journal's several synced writes, which halves what a trace costs the logging process (measured by
    experiments/benchmarks/trace_assessments.py: ~190 -> ~80 ms a trace), and `mlflow ui` can read the
    store while a sweep writes it. Best effort: a store that cannot switch keeps working, only slower."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass


# The schemes MLflow 3's tracking-store registry knows; plugins add theirs as `mlflow.tracking_store` entry points.
MLFLOW_SCHEMES = {"", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}


def check_scheme(uri: str) -> None:
    """A tracking URI whose scheme no MLflow store handles fails at once: before a local model starts or a
    corpus is embedded, and without importing MLflow into this process."""
    scheme = urlparse(uri).scheme.split("+")[0].lower()  # postgresql+psycopg2 -> postgresql
    if len(scheme) == 1 or scheme in MLFLOW_SCHEMES:  # "c" of a Windows path
        return
    from importlib.metadata import entry_points

    if scheme in {ep.name for ep in entry_points(group="mlflow.tracking_store")}:
        return
    raise TrackingError(
        f"cannot use MLflow tracking URI {uri!r}: MLflow has no store for the scheme {scheme!r}. Point "
        "tracking.tracking_uri (or --tracking-uri) at a sqlite file (sqlite:///mlruns/mlflow.db), a server "
        "(http://host:5000) or a database (postgresql://...), or install the MLflow plugin for that scheme."
    )


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


def check_artifact_location(uri: str, experiment: str, artifact_location: str) -> None:
    """Refuse to log into a copied project's original folder.

    MLflow (3.17, sqlite store) turns a relative artifact location into an absolute path when it creates
    the experiment, so a project folder copied elsewhere keeps writing its artifacts (tables, YAML,
    traces) into the original folder. Read (never migrate) the store: when the experiment's artifacts
    lie outside the project that holds the store while the configured location lies inside it, stop
    with what to do.
    """
    path = sqlite_path(uri)
    if path is None or not path.is_file() or "://" in artifact_location:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
    except sqlite3.Error:  # not created yet, or an older schema: MLflow's own checks follow
        return
    if not row or not row[0] or not (row[0].startswith("file:") or row[0].startswith("/")):
        return
    stored = Path(unquote(urlparse(row[0]).path) if row[0].startswith("file:") else row[0])
    project = path.resolve().parent.parent  # mlruns/mlflow.db -> the project folder
    wanted = Path(artifact_location).resolve()
    if stored != wanted and wanted.is_relative_to(project) and not stored.is_relative_to(project):
        raise TrackingError(
            f"MLflow experiment {experiment!r} in {path} keeps its artifacts in {stored}, outside this project "
            f"({project}): MLflow stored that absolute path when the experiment was created, so this store was "
            "probably copied from another folder and logging would write into the original. Use a new "
            "experiment name (`experiment:` in the spec) or remove the copied store and run again."
        )
