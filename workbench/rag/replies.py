"""A 200 chat-completion reply, checked field by field before anything reads it (pure, no I/O).

The `openai` client builds its response objects without validation, so a `choices` that is a string or
a null `message` used to surface as an AttributeError deep in the sweep. Here the raw JSON is read
into a `Reply`, or `MalformedReply` says what was wrong (the caller retries, then records the cell as
failed). What is odd but usable is kept, with a note: `content` as a list of parts (joined), token
counts that are not counts (strings, negative, absurd: unknown, never negative costs), an answer far
longer than `max_tokens` allows (truncated, so a runaway server cannot store megabytes per cell).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# No endpoint has a context this large; a larger count is garbage, not usage.
MAX_PLAUSIBLE_TOKENS = 10_000_000
# A token is ~4 characters of English; 16 leaves room for any tokenizer and still caps a runaway answer.
CHARS_PER_TOKEN_CAP = 16


class MalformedReply(ValueError):
    """The reply cannot be read as a chat completion; the message says which field is wrong."""


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str | None
    finish_reason: str | None
    notes: tuple[str, ...] = ()
    logprobs: tuple[float, ...] | None = None  # per answer token, when the request asked for them


def token_logprobs(choice: dict) -> tuple[float, ...] | None:
    """`choices[0].logprobs.content[*].logprob` (OpenAI's format, llama.cpp's server too); None when the
    reply has none or they are not numbers (a routing signal must not read garbage as confidence)."""
    block = choice.get("logprobs")
    content = block.get("content") if isinstance(block, dict) else None
    if not isinstance(content, list):
        return None
    values = [t.get("logprob") if isinstance(t, dict) else None for t in content]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0 and v == v for v in values):
        return None
    return tuple(float(v) for v in values)


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string",
                                         bool: "a boolean"}.get(type(value), "a number")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def content_text(content: Any) -> str:
    """The message text: a string, or a list of parts whose text parts are joined (null: empty)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):  # {"type": "text" | "output_text", "text": ...}
                    texts.append(part["text"])
            else:
                raise MalformedReply(f"'choices[0].message.content[{i}]' is {_kind(part)}, not a text part")
        return "".join(texts)
    raise MalformedReply(f"'choices[0].message.content' is {_kind(content)}, not text or a list of parts")


def token_count(usage: dict, name: str, notes: list[str]) -> int | None:
    """usage[name] if it is a plausible count; anything else is unknown (None), with a note."""
    if name not in usage or usage[name] is None:
        return None
    value = usage[name]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PLAUSIBLE_TOKENS:
        return value
    notes.append(f"usage.{name} was {_short(value)}, not a token count: treated as unknown")
    return None


def parse_chat_reply(raw: bytes | str, max_tokens: int | None = None) -> Reply:
    """The reply of a 200 /chat/completions, or MalformedReply naming what is wrong.

    max_tokens: the answer is cut at max_tokens × CHARS_PER_TOKEN_CAP characters (with a note).
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        raise MalformedReply(f"the body is not JSON ({_short(str(exc), 80)})") from None
    if not isinstance(body, dict):
        raise MalformedReply(f"the body is {_kind(body)}, not a JSON object")
    if "choices" not in body:
        error = body.get("error")
        detail = f": {_short(error.get('message') if isinstance(error, dict) else error, 200)}" if error else ""
        raise MalformedReply(f"the body has no 'choices'{detail}")
    choices = body["choices"]
    if not isinstance(choices, list):
        raise MalformedReply(f"'choices' is {_kind(choices)}, not a list")
    if not choices:
        raise MalformedReply("'choices' is empty (no answer)")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise MalformedReply(f"'choices[0]' is {_kind(choice)}, not an object")
    if "message" not in choice:
        raise MalformedReply("'choices[0]' has no 'message'")
    message = choice["message"]
    if not isinstance(message, dict):
        raise MalformedReply(f"'choices[0].message' is {_kind(message)}, not an object")
    text = content_text(message.get("content")).strip()

    notes: list[str] = []
    usage = body.get("usage")
    prompt = completion = None
    if isinstance(usage, dict):
        prompt, completion = token_count(usage, "prompt_tokens", notes), token_count(usage, "completion_tokens", notes)
    elif usage is not None:
        notes.append(f"usage is {_kind(usage)}, not an object: token counts unknown")
    if max_tokens is not None and len(text) > (cap := max_tokens * CHARS_PER_TOKEN_CAP):
        notes.append(f"answer truncated to {cap:,} characters (max_tokens {max_tokens} × {CHARS_PER_TOKEN_CAP}); "
                     f"the endpoint sent {len(text):,}")
        text = text[:cap]
    finish = choice.get("finish_reason")
    model = body.get("model")
    return Reply(text=text, prompt_tokens=prompt, completion_tokens=completion,
                 model=model if isinstance(model, str) and model else None,
                 finish_reason=finish if isinstance(finish, str) else None, notes=tuple(notes),
                 logprobs=token_logprobs(choice))


__all__ = ["CHARS_PER_TOKEN_CAP", "MalformedReply", "Reply", "content_text", "parse_chat_reply"]
