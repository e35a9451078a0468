"""The fake endpoint's hostile misbehaviours: replies that are 200 but unusable, odd or endless.

Used by `workbench.testing.fake_server` when a fault of one of these kinds is drawn (see its docstring);
none is in the default fault cycle, so existing fault rates keep their meaning.

Kinds (name them in `faults`):
    trickle    status 200 and headers at once, then the body one byte every `trickle_interval` s
               (httpx's read timeout restarts with every byte).
    no_message, null_message, choices_string, content_number
               after `latency`: a 200 whose first choice has no `message`, a null one, `choices` as a
               string, `content` as a number (embeddings: `data` as a string).
    content_parts  `content` as a list of text parts (some servers send this; it is usable).
    usage_strings, usage_negative  token counts as strings / negative numbers.
    huge       an answer of `huge_chars` characters, whatever max_tokens says.
    unauthorized  at once: 401 "Incorrect API key provided: <the key sent>" (as `require_key` below).
    nan        embeddings: a 200 whose every vector is NaN (a broken model; chat: an empty `choices`).
A model named `fault:<kind>` (any kind, also the default ones) always gets that fault, whatever
`fail_rate` says: one server then hosts a good model and misbehaving ones side by side in one sweep.
`require_key`: every /v1 request whose bearer token differs gets 401 "Incorrect API key provided: <the
token>" - the echo a real API sends, so a client that prints server text leaks the key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

SHAPE_KINDS = ("no_message", "null_message", "choices_string", "content_number", "content_parts",
               "usage_strings", "usage_negative", "huge")
HOSTILE_KINDS = ("trickle", "unauthorized", "nan", *SHAPE_KINDS)
FAULT_MODEL_PREFIX = "fault:"


def fault_models(kinds) -> list[str]:
    """The model names that always get one fault kind (listed by /v1/models, so clients' checks pass)."""
    return [FAULT_MODEL_PREFIX + kind for kind in kinds]


def forced_fault(model, known) -> str | None:
    """The fault a `fault:<kind>` model name asks for, if `kind` is one of `known`."""
    if isinstance(model, str) and model.startswith(FAULT_MODEL_PREFIX):
        kind = model.removeprefix(FAULT_MODEL_PREFIX)
        return kind if kind in known else None
    return None


def reshape(kind: str, body: dict, huge_chars: int) -> None:
    """Turn a good chat body into the hostile shape `kind` (an embeddings body gets a string `data`)."""
    if "choices" not in body:
        body["data"] = "not a list (injected fault)"
        return
    choice, usage = body["choices"][0], body["usage"]
    if kind == "no_message":
        del choice["message"]
    elif kind == "null_message":
        choice["message"] = None
    elif kind == "choices_string":
        body["choices"] = "the answer is in here somewhere"
    elif kind == "content_number":
        choice["message"]["content"] = 42
    elif kind == "content_parts":
        words = choice["message"]["content"].split(" ")
        half = max(1, len(words) // 2)
        choice["message"]["content"] = [{"type": "text", "text": " ".join(words[:half]) + " "},
                                        {"type": "image_url", "image_url": {"url": "data:,"}},
                                        {"type": "text", "text": " ".join(words[half:])}]
    elif kind == "usage_strings":
        usage.update(prompt_tokens=str(usage["prompt_tokens"]), completion_tokens="many")
    elif kind == "usage_negative":
        usage.update(prompt_tokens=-1_000_000, completion_tokens=-5)
    elif kind == "huge":
        choice["message"]["content"] = ("lorem ipsum " * (huge_chars // 12 + 1))[:huge_chars]


def nan_vectors(body: dict, dim: int) -> None:
    """Every embedding of a good embeddings body turned into NaN (base64 ones too); a chat body loses its choices."""
    import base64
    import struct

    if "data" not in body:
        body["choices"] = []
        return
    for item in body["data"]:
        if isinstance(item["embedding"], list):
            item["embedding"] = [float("nan")] * len(item["embedding"])
        else:
            item["embedding"] = base64.b64encode(struct.pack(f"<{dim}f", *[float("nan")] * dim)).decode("ascii")


async def trickle(text: str, interval: float) -> AsyncIterator[bytes]:
    """The body one byte every `interval` s (the headers went out already): a read timeout never fires."""
    for byte in text.encode():
        yield bytes([byte])
        await asyncio.sleep(interval)
