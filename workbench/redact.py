"""Redaction of personal data (e-mail addresses, phone numbers, payment card numbers) in logged text."""

from __future__ import annotations

import re

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
DATE = re.compile(r"\d{4}[ .-]\d{1,2}[ .-]\d{1,2}|\d{1,2}[ .-]\d{1,2}[ .-]\d{4}")
PHONE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-]?)?\(?\d{2,4}\)?(?:[ .-]\d{2,4}){2,4}(?![\w.])")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _phone(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if DATE.fullmatch(match.group(0)):
        return match.group(0)
    # Years, counts and scores are short; phone numbers have 7-15 digits and some separator or a +.
    if 7 <= len(digits) <= 15 and (match.group(0).startswith("+") or re.search(r"[ .()-]", match.group(0))):
        return "[PHONE]"
    return match.group(0)


def redact_text(text: str | None) -> str | None:
    """Replace e-mails, card numbers (Luhn-valid) and phone numbers with placeholders."""
    if not text:
        return text
    text = EMAIL.sub("[EMAIL]", text)
    text = CARD.sub(_card, text)
    return PHONE.sub(_phone, text)


REDACTED_FIELDS = ("question", "answer", "contexts", "messages")


def redact_row(row: dict) -> dict:
    """A copy of a result row with personal data replaced in its question, answer, contexts and messages."""
    out = dict(row)
    for key in REDACTED_FIELDS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = redact_text(value)
        elif isinstance(value, list):
            out[key] = [
                {**v, "content": redact_text(v.get("content"))} if isinstance(v, dict) else redact_text(v)
                for v in value
            ]
    return out
