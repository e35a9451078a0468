"""Secrets out of error text: the one scrubber every model client (chat, embeddings, judge) runs its
errors through before they reach a message, a cell, MLflow or a log.

    scrub("Incorrect API key provided: sk-proj-abc123…", secrets=[key])   # 'Incorrect API key provided: ***'

Two nets, because a server may echo the key in full, in part (OpenAI shows `sk-ab***********wxyz`), or
in a URL: every known secret value (and any 8+ character piece of it) is replaced, and so is anything
shaped like a key — `sk-…` tokens, `Bearer …`, `user:password@` in URLs, `?api-key=…`-style query
parameters. Personal data is `workbench.redact`'s business, not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
MIN_SECRET = 4  # shorter "keys" (placeholders, test values) would mask ordinary words
FRAGMENT = 8  # a run of this many characters of a known key is the key, echoed in part

_PATTERNS = (
    # OpenAI-style keys, also with a masked middle: sk-…, sk-proj-…, sk-ab****wxyz
    (re.compile(r"\bsk-[A-Za-z0-9_*\-.]{6,}"), MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-*]{8,}"), r"\1 " + MASK),
    # credentials in a URL's authority: scheme://user:secret@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@:]+:[^\s/@]+@"), r"\1" + MASK + "@"),
    # key-like query or header parameters: ?api-key=…, &access_token=…, api_key: …
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key|access[-_]?token|token|secret|password|sig|signature)"
                r"(\s*[=:]\s*)(?!\*\*\*)[^\s&,;'\")]+"), r"\1\2" + MASK),
)


def _fragments(secret: str) -> Iterable[str]:
    """The secret, then its FRAGMENT-long pieces at each start: a partial echo is still a leak."""
    yield secret
    if len(secret) > FRAGMENT:
        for i in range(len(secret) - FRAGMENT + 1):
            yield secret[i : i + FRAGMENT]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known secret (and any 8-character piece of one) and every key-shaped string masked."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            for piece in _fragments(secret):
                text = text.replace(piece, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


__all__ = ["MASK", "scrub"]
