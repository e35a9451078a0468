"""What the service accepts, checked before any work: each bad body gets one message naming the field and
saying what to send (`BadRequest`, a 4xx)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError
from workbench.tracking.serve_log import UserFeedback


class BadRequest(WorkbenchError):
    def __init__(self, message: str, *, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024
    max_question_chars: int = 8_000
    max_text_chars: int = 8_000  # a corrected answer or a comment


def _json(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object, e.g. {\"question\": \"Who won?\"}")
    try:
        text = raw.decode("utf-8")  # JSON over HTTP is UTF-8 (RFC 8259); json.loads would guess UTF-16 too
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text; send a JSON object encoded as UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         "send a JSON object, e.g. {\"question\": \"Who won?\"}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the request body is a JSON {type(value).__name__}, not an object; send e.g. "
                         "{\"question\": \"Who won?\"}")
    return value


def _text(value: Any, field: str, limit: int, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected a string, got {type(value).__name__}", param=field)
    if required and not value.strip():
        raise BadRequest(f"{field} is empty; ask a question in words, e.g. \"Who won Super Bowl 50?\"", param=field)
    if len(value) > limit:
        raise BadRequest(f"{field} is {len(value):,} characters, over the limit of {limit:,}; shorten it",
                         status=413, param=field)
    return value


def parse_answer(raw: bytes, limits: Limits) -> str:
    body = _json(raw)
    if "question" not in body:
        raise BadRequest("field 'question' is missing; send {\"question\": \"...\"}", param="question")
    return _text(body["question"], "question", limits.max_question_chars)


def _content(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of parts (the text parts, joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    raise BadRequest(f"{where}: expected a string or a list of {{\"type\": \"text\", \"text\": ...}} parts",
                     param=where)


def parse_chat(raw: bytes, limits: Limits) -> str:
    """The question of an OpenAI chat request: its last user message."""
    body = _json(raw)
    if body.get("stream"):
        raise BadRequest("stream: streaming is not supported; send \"stream\": false", param="stream")
    if body.get("n") not in (None, 1):
        raise BadRequest("n: only one choice is returned; send \"n\": 1", param="n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: expected a non-empty list of {\"role\": ..., \"content\": ...}", param="messages")
    users = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise BadRequest("messages: no message has role \"user\"; the last user message is the question",
                         param="messages")
    i, last = users[-1]
    return _text(_content(last.get("content"), f"messages[{i}].content"), f"messages[{i}].content",
                 limits.max_question_chars)


def parse_feedback(raw: bytes, limits: Limits) -> UserFeedback:
    body = _json(raw)
    unknown = sorted(set(body) - {"answer_id", "rating", "correction", "comment", "user"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; feedback takes answer_id, rating, correction, "
                         "comment and user", param=unknown[0])
    answer_id = body.get("answer_id")
    if not isinstance(answer_id, str) or not answer_id:
        raise BadRequest("answer_id is missing; send the answer_id of a /answer reply (or the id of a chat reply)",
                         param="answer_id")
    rating = body.get("rating")
    if isinstance(rating, bool) or not (rating is None or rating in ("up", "down")
                                        or (isinstance(rating, int) and 1 <= rating <= 5)):
        raise BadRequest(f"rating: {rating!r} is not a rating; send \"up\", \"down\" or a whole number 1-5",
                         param="rating")
    correction = _text(body.get("correction"), "correction", limits.max_text_chars, required=False)
    comment = _text(body.get("comment"), "comment", limits.max_text_chars, required=False)
    user = _text(body.get("user"), "user", 200, required=False)
    if rating is None and not (correction or "").strip() and not (comment or "").strip():
        raise BadRequest("feedback is empty; send a rating (\"up\", \"down\" or 1-5), a correction or a comment",
                         param="rating")
    return UserFeedback(answer_id=answer_id, rating=rating, correction=correction or None, comment=comment or None,
                        user=user)
