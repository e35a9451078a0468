"""`import chromadb` without the 1.7 s it spends on something it never uses.

chromadb imports jsonschema (for its embedding functions' config schemas), and jsonschema imports
`rfc3987_syntax` at its own import when that is installed (JupyterLab's jupyter-events brings it through
`jsonschema[format-nongpl]`) to check the "iri" string format: that import compiles a Lark grammar, ~1.7 s
of CPU which, in a sweep, runs on an index thread while the event loop waits for the same GIL (measured
with py-spy and per-thread CPU: a third of a warm `workbench run`'s index thread). Neither chromadb nor the
workbench validates "iri" strings, so the first import of jsonschema, when it happens here, skips it;
`rfc3987_syntax` stays importable for anyone who imports it later.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()


def import_chromadb() -> ModuleType:
    if "chromadb" in sys.modules or "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import chromadb

        return chromadb
    with _LOCK:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # jsonschema: ImportError, no "iri"
        try:
            import chromadb
        finally:
            if sys.modules.get("rfc3987_syntax", ...) is None:
                del sys.modules["rfc3987_syntax"]
    return chromadb


__all__ = ["import_chromadb"]
