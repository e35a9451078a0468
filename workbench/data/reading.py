"""Reading input files and checking their fields, for the corpus and eval-set loaders.

Every problem raises one `DataError` naming the file (and line, field or value) and the fix; no raw
JSON or decoding error escapes.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workbench.errors import DataError

log = logging.getLogger(__name__)

SHOW_MISSING = 5  # how many missing or skipped ids a message names


def need_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected the {what} file")
    if path.exists() and not path.is_file():  # reading a FIFO would block forever, a device never end
        raise DataError(f"{path}: is {special_kind(path.stat().st_mode)}, not a regular file; "
                        f"point at the {what} file itself")
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found ({_relative_hint(path)})")
    return path


def special_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    kinds = [(stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def need_dir(path: Path, what: str) -> Path:
    if path.is_file():
        raise DataError(f"{path}: is a file, expected the {what} folder")
    if not path.is_dir():
        raise DataError(f"{path}: {what} folder not found ({_relative_hint(path)})")
    return path


def _relative_hint(path: Path) -> str:
    if path.is_absolute():
        return "check the path"
    return f"relative paths are resolved from the working directory {Path.cwd()}; check the path"


def read_text(path: Path, *, follow_symlinks: bool = True) -> str:
    """A regular file's UTF-8 text. Opened without blocking and checked after opening (a FIFO swapped in
    after a check is refused, not waited on); with follow_symlinks=False a link is refused too."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{path}: is a symbolic link, which is not followed; set "
                            "data.corpus.follow_symlinks: true to read it") from None
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise DataError(f"{path}: is {special_kind(mode)}, not a regular file; point at a regular file")
            data = fh.read()
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (invalid byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None


def read_json(path: Path) -> Any:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if _SURROGATE_ESCAPE.search(text):
        data, count = replace_surrogates(data)
        _warn_surrogates(str(path), count, str(path))
    return data


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff); UTF-8 text itself cannot hold one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(value: Any) -> tuple[Any, int]:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD, and how many there were.

    JSON may escape half of a surrogate pair ("\\ud83d"); Python decodes it into a str that cannot be
    encoded as UTF-8, so hashing, Chroma and MLflow would fail on it much later."""
    if isinstance(value, str):
        return _LONE_SURROGATE.subn("\ufffd", value)
    if isinstance(value, list):
        pairs = [replace_surrogates(v) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            (k2, n1), (v2, n2) = replace_surrogates(k), replace_surrogates(v)
            out[k2] = v2
            total += n1 + n2
        return out, total
    return value, 0


def _warn_surrogates(path: str, count: int, first: str) -> None:
    if count:
        log.warning("%s: replaced %d lone UTF-16 surrogate escape(s) (first at %s) with U+FFFD; they are half of "
                    "an emoji or other character and cannot be stored as UTF-8 — fix the file's JSON escapes",
                    path, count, first)


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location 'file:line', object) for each non-blank line."""
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
    replaced, first = 0, ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type_name(obj)}")
        if _SURROGATE_ESCAPE.search(line):
            obj, count = replace_surrogates(obj)
            replaced, first = replaced + count, first or f"line {lineno}"
        yield where, obj
    _warn_surrogates(str(path), replaced, first)


def type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), f"a {type(value).__name__}")


def required(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] is None:
        found = ", ".join(repr(k) for k in obj) or "none"
        raise DataError(f"{where}: missing required field {key!r} (fields found: {found})")
    return obj[key]


def as_str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type_name(value)} ({value!r})")
    return value


def as_id(value: Any, key: str, where: str) -> str:
    """Ids are strings; whole numbers are accepted and turned into strings."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = as_str(value, key, where)
    if not text.strip():
        raise DataError(f"{where}: field {key!r} is empty; give every record a non-empty id")
    return text


def as_str_list(value: Any, key: str, where: str, ids: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DataError(f"{where}: field {key!r} must be a list of strings, got {type_name(value)} ({value!r})")
    out = []
    for i, v in enumerate(value):
        out.append(as_id(v, f"{key}[{i}]", where) if ids else as_str(v, f"{key}[{i}]", where))
    return tuple(out)


def dedup(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v.strip()))


def squad_paragraphs(path: Path) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """Yield (json location, article title, paragraph index, paragraph) of a SQuAD v1.1 file."""
    data = read_json(need_file(path, "SQuAD JSON"))
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: not a SQuAD v1.1 file; expected an object with a 'data' list of articles")
    for a, article in enumerate(data["data"]):
        where = f"{path}: data[{a}]"
        if not isinstance(article, dict):
            raise DataError(f"{where}: expected an article object, got {type_name(article)}")
        title = as_str(required(article, "title", where), "title", where)
        paragraphs = required(article, "paragraphs", where)
        if not isinstance(paragraphs, list):
            raise DataError(f"{where}: field 'paragraphs' must be a list, got {type_name(paragraphs)}")
        for p, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise DataError(f"{pwhere}: expected a paragraph object, got {type_name(paragraph)}")
            yield pwhere, title, p, paragraph
