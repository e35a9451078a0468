"""Redaction of personal data (e-mail addresses, phone numbers, payment cards, IBANs) in logged rows.

`redact_row` is what the tracker and the export call on every row when `tracking.redact` is on; it
covers every field of a result row that carries user text (`REDACTED_FIELDS`, the text fields of
`workbench.scoring.cell.Cell`). What counts as personal data, and how it is found, is in `detect`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from workbench.redact.detect import PHONE_REGIONS, Span, find

# Every row field that holds text a user wrote or a document held: the question and its reference
# answers, the prompt, the answer, the retrieved passages, and document/chunk ids (a file name can be
# an e-mail address). `error` may quote the prompt back. Ids of questions and variants are ours.
REDACTED_FIELDS = (
    "question",
    "messages",
    "answer",
    "reference_answers",
    "relevant_ids",
    "retrieved_doc_ids",
    "retrieved_chunk_ids",
    "retrieved_chunk_doc_ids",
    "contexts",
    "error",
)
# Keys of a chat message (or of one of its content parts) that hold text; "role" and "type" do not.
_MESSAGE_TEXT = ("content", "text")


@lru_cache(maxsize=4096)  # the same passages come back for many variants and questions
def _redact(text: str) -> str:
    spans = find(text)
    if not spans:
        return text
    out, last = [], 0
    for span in spans:
        out.append(text[last:span.start])
        out.append(f"[{span.kind}]")
        last = span.end
    out.append(text[last:])
    return "".join(out)


def redact_text(text: str | None) -> str | None:
    """The text with each e-mail, phone number, payment card and IBAN replaced by [EMAIL], [PHONE],
    [CARD] or [IBAN]; None and "" come back as they are."""
    return _redact(text) if text else text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):  # a chat message, or a part of one ({"type": "text", "text": …})
        return {k: _redact_value(v) if k in _MESSAGE_TEXT else v for k, v in value.items()}
    return value


def redact_row(row: dict) -> dict:
    """A copy of a result row with personal data replaced in every field of `REDACTED_FIELDS`; other
    keys, and the key order, are kept."""
    out = dict(row)
    for key in REDACTED_FIELDS:
        if key in out:
            out[key] = _redact_value(out[key])
    return out


__all__ = ["PHONE_REGIONS", "REDACTED_FIELDS", "Span", "find", "redact_row", "redact_text"]
