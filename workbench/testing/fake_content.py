"""What the fake OpenAI endpoint answers: deterministic text, token counts, embeddings and JSON.

Everything is a pure function of the request (sha256 of its content), identical on every platform,
so tests and benchmarks can predict answers, usage and vectors.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from typing import Any

WORD = re.compile(r"\S+")


def _sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).digest()


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return str(content)


def count_tokens(text: str) -> int:
    """A deterministic token estimate: int(words · 1.3) (at least 1 for non-empty text)."""
    words = len(WORD.findall(text))
    return max(1, int(words * 1.3)) if words else 0


def make_answer(messages: list[dict], max_tokens: int | None = None) -> tuple[str, str]:
    """(answer, finish_reason): 3-12 consecutive words of the last user message, picked by a hash
    of all the messages; at most `max_tokens` words (then finish_reason "length")."""
    key = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    h = int.from_bytes(_sha(key)[:8], "big")
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
                     messages[-1] if messages else {})
    words = WORD.findall(content_text(last_user.get("content") if isinstance(last_user, dict) else ""))
    if not words:
        words = ["OK"]
    n = min(3 + h % 10, len(words))
    start = (h >> 16) % (len(words) - n + 1)
    span = words[start:start + n]
    finish = "stop"
    if max_tokens is not None and max_tokens >= 0 and len(span) > max_tokens:
        span, finish = span[:max_tokens], "length"
    return " ".join(span), finish


def embed_text(text: str, dim: int) -> list[float]:
    """A unit vector of `dim` floats, seeded by sha256(text) (identical on every platform)."""
    seed = _sha(text)
    out: list[float] = []
    counter = 0
    while len(out) < dim:  # Box-Muller on a sha256 stream: no numpy needed, fully deterministic
        block = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
        for i in range(0, 32, 8):
            a, b = struct.unpack(">II", block[i:i + 8])
            u1 = (a + 1) / 4294967297.0
            u2 = b / 4294967296.0
            r = math.sqrt(-2.0 * math.log(u1))
            out.append(r * math.cos(2 * math.pi * u2))
            out.append(r * math.sin(2 * math.pi * u2))
    out = out[:dim]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]


def _resolve_ref(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def schema_instance(schema: Any, text: str, root: dict | None = None, depth: int = 0) -> Any:
    """A minimal value valid for a (simple) JSON schema: const / enum / default first, then type
    defaults: strings from `text`, numbers and integers 1 (or `minimum`), booleans true, null,
    arrays of max(minItems, 1) items, objects with every listed property (required ones at least)."""
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    if not isinstance(schema, dict) or depth > 12:
        return text
    if "$ref" in schema:
        return schema_instance({**_resolve_ref(schema["$ref"], root),
                                **{k: v for k, v in schema.items() if k != "$ref"}}, text, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [o for o in schema[key] if not (isinstance(o, dict) and o.get("type") == "null")]
            return schema_instance((options or schema[key])[0], text, root, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            part = _resolve_ref(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = merged.get("required", []) + list(part.get("required", []))
        return schema_instance(merged, text, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        names = list(props) + [r for r in schema.get("required", []) if r not in props]
        return {name: schema_instance(props.get(name, {"type": "string"}), text, root, depth + 1) for name in names}
    if kind == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        item = schema.get("items", {"type": "string"})
        if isinstance(item, list):  # tuple form
            return [schema_instance(s, text, root, depth + 1) for s in item]
        return [schema_instance(item, text, root, depth + 1) for _ in range(n)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 1 if low is None or low < 1 else math.ceil(low) + (1 if "exclusiveMinimum" in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = math.floor(high) if kind == "integer" else high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = text or "x"  # string
    if "maxLength" in schema:
        value = value[: int(schema["maxLength"])]
    if len(value) < int(schema.get("minLength", 0)):
        value = value.ljust(int(schema["minLength"]), "x")
    return value
