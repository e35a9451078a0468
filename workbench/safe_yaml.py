"""The one way the workbench reads YAML: specs, variants, exports and a sweep's logged spec all come here.

PyYAML's safe loader still lets a small file do harm: a 3.8 KB alias bomb took 33 s and > 2.4 GB before
MemoryError (it was hashed before it was validated), a key given twice silently kept only the last, and
`.inf`, dates or sets reached the hashing as values JSON cannot hold. `parse_yaml` refuses all of these with
one error naming the file, the line or the field. The limits are far above any real spec or export and far
below what hurts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from workbench.errors import ConfigError

MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # scalars, lists and mappings, with every alias expanded
MAX_YAML_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (it silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then overriding keys is allowed
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:  # an unhashable key (a list or mapping): SafeLoader refuses it itself
                    continue
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given at line {first_line[key]}); keep one of them",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, source: str) -> int:
    """Nodes with every alias expanded (what validation and hashing would walk), without expanding them."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(f"{source}: a YAML alias refers to itself (line {node.start_mark.line + 1}); remove the recursive alias")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: YAML nested deeper than {MAX_YAML_DEPTH} levels (line {node.start_mark.line + 1})")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            active.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_YAML_NODES:
                    raise ConfigError(
                        f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values (aliases such as *name "
                        "repeat what they point to); a spec or export is far smaller: remove the repeated aliases"
                    )
            active.discard(key)
        sizes[key] = total
        return total

    return size(root, 0)


def _plain(value: Any, where: str, source: str) -> None:
    """Only JSON's kinds of values: what hashing and the models can take (no dates, sets, bytes, inf, NaN)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{source}: key {k!r} under {where or '(top level)'} is not a string; quote it")
            _plain(v, f"{where}.{k}" if where else k, source)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, f"{where}.{i}" if where else str(i), source)
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ConfigError(f"{source}: {where or '(top level)'}: {value} is not a finite number; give a number like 1.5")
    elif not isinstance(value, (str, int, float, bool, type(None))):
        raise ConfigError(
            f"{source}: {where or '(top level)'}: a YAML {type(value).__name__} is not allowed here; quote it as a string"
        )


def parse_yaml(text: str, source: str) -> Any:
    """YAML text → plain data, refusing what would exhaust memory or be silently wrong (see MAX_YAML_*)."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_YAML_BYTES >> 20} MiB; a spec or export is far smaller")
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _expanded_size(root, source)
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply; a spec or export is a few levels deep") from None
    finally:
        loader.dispose()
    _plain(data, "", source)
    return data


def read_yaml(path: str | Path) -> Any:
    """A YAML file through `parse_yaml`, read only if it is a regular file of at most MAX_YAML_BYTES."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found (give the path to a YAML spec, e.g. experiments/quickstart.yaml)")
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror}); check its permissions") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_YAML_BYTES >> 20} MiB; a spec or export is far smaller")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text; save the spec as UTF-8") from None
    return parse_yaml(text, str(p))
