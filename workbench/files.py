"""Writing a file whole or not at all, with one clear error when the disk refuses (any layer may use it)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from workbench.errors import StorageError


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file and rename it into place; on failure the temporary file is removed
    and one StorageError names the file (a full disk left a 0-byte temp file and a traceback)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, exc) from None


def storage_error(path: Path, exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageError(f"disk full writing {path} ({exc.strerror}); free space on that disk, or set `home` in "
                            "the spec to a folder on another disk, and run again (finished cells are kept)")
    return StorageError(f"cannot write {path} ({exc.strerror}); check that its folder exists and is writable")


__all__ = ["storage_error", "write_atomically"]
