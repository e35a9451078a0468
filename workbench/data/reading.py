"""Reading input files and checking their fields, for the corpus and eval-set loaders.

Every problem raises one `DataError` naming the file (and line, field or value) and the fix; no raw
JSON or decoding error escapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workbench.errors import DataError

SHOW_MISSING = 5  # how many missing or skipped ids a message names


def need_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected the {what} file")
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found ({_relative_hint(path)})")
    return path


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


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
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
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (location 'file:line', object) for each non-blank line."""
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
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
        yield where, obj


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
