"""Libraries imported without what they import but never use here, which a sweep paid for on the way to its
first model calls or beside them (measured with py-spy and per-thread CPU on a fresh `workbench run`).

- chromadb imports jsonschema (for its embedding functions' config schemas), and jsonschema imports
  `rfc3987_syntax` at its own import when that is installed (JupyterLab's jupyter-events brings it through
  `jsonschema[format-nongpl]`) to check the "iri" string format: that import compiles a Lark grammar, ~1.7 s
  of CPU. Neither chromadb nor the workbench validates "iri" strings.
- chromadb marks ~150 methods with the `overrides` package's `@override`, which checks each one against its
  base class as the class is made: it disassembles the caller's bytecode to find the bases and compares the
  signatures (~0.05-0.1 s of CPU, a tenth of the import). The mark stays (`EnforceOverrides` classes read
  it); the check, a lint of chromadb's own code, is skipped.
- bm25s imports `scipy.sparse` (~0.14 s: scipy's array-API layer, numpy.f2py) for a sparse-matrix backend it
  uses only when asked (`csc_backend="scipy"`); the workbench builds with its default numpy backend.
- MLflow's tracer imports `mlflow.pyfunc` (~0.4 s: pyfunc's model loaders, the Responses types) as each trace
  starts, to read the prediction context that only a pyfunc model's `predict` sets; in a process that has not
  imported pyfunc there is none (`starting_a_trace`), so the first trace the user waits for is stored that much
  sooner.
- httpx imports its own command-line client (`httpx._main`: rich, pygments' lexer map, click; ~85 ms) and
  tenacity imports tornado, when installed (Jupyter brings it), to retry tornado coroutines (~60 ms): on the
  main thread of `workbench run` before its first model call (`import_for_the_command_line`).

The modules skipped are skipped only for the thread doing the import (another thread importing them at the same
moment gets them) and stay importable afterwards. The unchecked `@override` holds for the whole process while
chromadb imports (a module another thread imports meanwhile gets its marks unchecked: a lint, not behaviour).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

_LOCK = threading.Lock()


class _Skip:
    """A meta-path finder that makes `names` (and their submodules) unimportable for one thread."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names, self.thread = names, threading.get_ident()

    def find_spec(self, name: str, path=None, target=None):
        if threading.get_ident() == self.thread and any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"{name} skipped while importing what does not need it", name=name)
        return None


@contextlib.contextmanager
def _skipping(*names: str) -> Iterator[None]:
    finder = _Skip(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def _unchecked_overrides() -> Iterator[None]:
    import overrides

    def mark(method=None, **_):  # @override and @override(check_signature=...) alike
        if method is None:
            return mark
        method.__override__ = True
        return method

    saved = overrides.override, overrides.overrides
    overrides.override = overrides.overrides = mark
    try:
        yield
    finally:
        overrides.override, overrides.overrides = saved


def import_chromadb() -> ModuleType:
    if "chromadb" in sys.modules:
        import chromadb

        return chromadb
    with _LOCK:
        skip = () if "jsonschema" in sys.modules else ("rfc3987_syntax",)  # jsonschema: no "iri" format
        with _skipping(*skip), _unchecked_overrides():
            import chromadb
    return chromadb


def import_bm25s() -> ModuleType:
    if "bm25s" in sys.modules:
        import bm25s

        return bm25s
    with _LOCK, _skipping("scipy"):
        import bm25s
    return bm25s


def import_for_the_command_line() -> None:
    """The first imports of httpx and tenacity in a `workbench run` process, without what they never need
    there (httpx's CLI, tornado); call it before anything imports either."""
    with _LOCK, _skipping("httpx._main", "tornado"):
        import httpx  # noqa: F401
        import tenacity  # noqa: F401


def starting_a_trace() -> contextlib.AbstractContextManager:
    """Around an MLflow trace's start: without `mlflow.pyfunc` when it is not imported yet (MLflow takes its
    ImportError as "no prediction context", as it does in mlflow-skinny)."""
    return contextlib.nullcontext() if "mlflow.pyfunc" in sys.modules else _skipping("mlflow.pyfunc")


__all__ = ["import_bm25s", "import_chromadb", "import_for_the_command_line", "starting_a_trace"]
