"""Finding personal data in text: where each e-mail address, IBAN, payment card and phone number is.

The checks that decide are maintained libraries, not hand-grown patterns: libphonenumber's port
(`phonenumbers`) finds and validates phone numbers per region, `python-stdnum` validates IBANs (country
length + mod 97), card checksums (Luhn) and ISBNs. The regexes here only propose candidates.
Microsoft Presidio (presidio-analyzer 2.2.366 on a blank spaCy pipeline, no model download) was
measured on the same table and not chosen: recall 0.93 with 11 false positives (IPs, page ranges,
ratios, decimals read as phones; dotted and 2-series cards missed), ~12 ms per short string, a 1.5-10 s
import of spaCy, and a network fetch of the public-suffix list at its first e-mail.

What must stay is protected before phones are looked for: IPv4/IPv6 addresses, ISBNs, dates and
version numbers are never phone numbers, whatever digits they hold.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

# Regions whose national formats (without +country code) are recognised. Numbers written with a
# +country code are found whatever the list; each region added costs one more pass over a candidate.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "JP", "BR", "CN", "AU", "ES", "IT", "NL", "MX", "KR")


class _Compiled:
    """A pattern compiled twice, Unicode-aware and ASCII-only: Python's re scans ASCII-only patterns
    about twice as fast, and for an ASCII text both find the same matches."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.unicode = re.compile(pattern, flags)
        self.ascii = re.compile(pattern, flags | re.ASCII)

    def on(self, text: str) -> re.Pattern:
        return self.ascii if text.isascii() else self.unicode


class Span(NamedTuple):
    start: int
    end: int
    kind: str  # EMAIL, IBAN, CARD, PHONE


# Unicode-aware (IDN, non-ASCII local parts): \w is Unicode in Python 3. The top-level label is letters
# (or punycode xn--…), so "a@b.1" is not an address; a trailing sentence dot is not taken.
EMAIL = _Compiled(
    r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[a-z0-9-]+)(?![\w-])",
    re.IGNORECASE,
)
# Country code, check digits, then 11-30 letters/digits in groups of any size separated by single spaces.
IBAN = _Compiled(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![\w])", re.IGNORECASE)
# Where cards and phones can be: 7 digits or more with at most 3 separators between neighbours, on
# one line. A quick scan for stretches of digits and separators finds where to look for them (it is
# several times cheaper than the exact pattern over a whole prompt; most prose has no such stretch).
DIGIT_STRETCH = _Compiled(r"[+(]?\d[\d \t().\-/]{6,}")
DIGIT_RUN = _Compiled(r"\+?\(?\d(?:[ \t().\-/]{0,3}\d){6,}\)?")
# 13-19 digits, optionally grouped by one kind of separator (space, dot or dash).
CARD = _Compiled(r"(?<![\w.,-])\d(?:[ .-]?\d){12,18}(?![\w]|[.,-]\d)")

IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:%\w+)?(?![\w:])", re.IGNORECASE)
# ISBN-13 (978/979…) in any grouping; ISBN-10 only after the word ISBN or in its 4 hyphenated groups —
# one 10-digit number in 11 has a valid ISBN-10 check digit, phone numbers included.
ISBN = re.compile(
    r"(?<![\w-])(?:97[89][- ]?(?:\d[- ]?){9}\d"
    r"|(?<=ISBN )(?:\d[- ]?){9}[\dX]|(?<=ISBN: )(?:\d[- ]?){9}[\dX]|(?<=ISBN-10 )(?:\d[- ]?){9}[\dX]"
    r"|\d{1,5}-\d{1,7}-\d{1,7}-[\dX])(?![\w-])"
)
# Dates, versions and decimals: 2016-02-07, 07/02/2016, 7.2.2016, 3.17.2, v10.0.19041.1, 2.718281828.
# A version's major part has at most 2 digits, so 415.555.0132 stays a phone.
DATE = re.compile(r"(?<![\w.+])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})(?![\w]|[-/.]\d)")
VERSION = re.compile(r"(?<![\w.+])v?\d{1,2}(?:\.\d{1,5}){2,3}(?![\w]|\.\d)")
DECIMAL = re.compile(r"(?<![\w.,+])\d+\.\d+(?![\w]|[.,]\d)")

# A range or ratio of two numbers, each plain or with thin-space thousands (11 256): "(6790-13 722".
NUMBER_PAIR = re.compile(r"\(?(\d{1,3}(?: \d{3})+|\d+) ?[-–/] ?(\d{1,3}(?: \d{3})+|\d+)\)?")

# Issuer prefixes of the major networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
# Maestro, Mir): a Luhn-valid run of digits that no network issues is more likely an id than a card.
CARD_PREFIX = re.compile(r"4|5[0-8]|2[2-7]|3[04-9]|6|220[0-4]")


def _luhn_ok(digits: str) -> bool:
    from stdnum import luhn

    return luhn.is_valid(digits)


def _iban_ok(candidate: str) -> bool:
    from stdnum import iban

    # Length and mod 97 only: stdnum's per-country BBAN checks (bank registries) reject real-looking
    # IBANs such as BE68 5390 0754 7034, and a leak is worse than a false [IBAN].
    return iban.is_valid(candidate, check_country=False)


def _isbn_ok(candidate: str) -> bool:
    from stdnum import isbn

    return isbn.is_valid(candidate)


# File name endings that are no top-level domain: jane@example.com.txt keeps its ".txt" ([EMAIL].txt),
# so redacted document ids still read as file names.
FILE_SUFFIXES = frozenset({"txt", "pdf", "json", "jsonl", "csv", "tsv", "html", "htm", "xml", "yaml", "yml", "docx"})


def emails(text: str) -> list[Span]:
    if "@" not in text:
        return []
    found = []
    for m in EMAIL.on(text).finditer(text):
        head, _, last = m.group(0).rpartition(".")
        end = m.end() - len(last) - 1 if last.lower() in FILE_SUFFIXES and "." in head.partition("@")[2] else m.end()
        found.append(Span(m.start(), end, "EMAIL"))
    return found


def ibans(text: str) -> list[Span]:
    found = []
    for m in IBAN.on(text).finditer(text):
        # The pattern may run on into following groups ("… 0130 00 AND 12"): the longest valid prefix
        # that ends at a group boundary is the IBAN.
        s = m.group(0)
        for end in range(len(s), 14, -1):
            if (end == len(s) or s[end] == " ") and _iban_ok(s[:end]):
                found.append(Span(m.start(), m.start() + end, "IBAN"))
                break
    return found


def clusters(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each run of 7 or more digits written close together (`DIGIT_RUN`)."""
    return [m.span() for stretch in DIGIT_STRETCH.on(text).finditer(text)
            for m in DIGIT_RUN.on(text).finditer(text, stretch.start(), stretch.end())]


def cards(text: str, runs: list[tuple[int, int]]) -> list[Span]:
    found = []
    for start, end in runs:
        # pos/endpos keep the scan inside the cluster; the lookbehind still sees the text before it.
        for m in CARD.on(text).finditer(text, start, min(len(text), end + 2)):
            s = m.group(0)
            if len(set(re.sub(r"\d", "", s))) > 1:
                continue  # mixed separators (1-800 555.0199 …) are not how a card is written
            digits = re.sub(r"\D", "", s)
            if CARD_PREFIX.match(digits) and _luhn_ok(digits):
                found.append(Span(m.start(), m.end(), "CARD"))
    return found


def protected(text: str) -> list[tuple[int, int]]:
    """Spans that hold no phone number whatever their digits: IP addresses, ISBNs, dates, versions."""
    spans = []
    for m in IPV4.finditer(text):
        if all(int(part) <= 255 for part in m.group(0).split(".")):
            spans.append(m.span())
    if ":" in text:
        for m in IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group(0).split("%")[0])
            except ValueError:
                continue
            spans.append(m.span())
    for m in ISBN.finditer(text):
        if _isbn_ok(m.group(0)):
            spans.append(m.span())
    spans.extend(m.span() for m in DATE.finditer(text))
    spans.extend(m.span() for m in VERSION.finditer(text))
    spans.extend(m.span() for m in DECIMAL.finditer(text))
    return spans


WORD = 40  # a URL or a blob of digits is not read whole around every number in it


def _windows(text: str, runs: list[tuple[int, int]]) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Merged stretches of text around each cluster (with the clusters they hold), widened to whole
    words (at most WORD characters each way) so the matcher sees the same neighbours (a letter glued
    to the digits, a leading +) as in the full text."""
    out: list[tuple[int, int, list[tuple[int, int]]]] = []
    for run in runs:
        start, end = run
        while start > max(0, run[0] - WORD) and not text[start - 1].isspace():
            start -= 1
        while end < min(len(text), run[1] + WORD) and not text[end].isspace():
            end += 1
        start, end = max(0, start - 1), min(len(text), end + 1)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end), [*out[-1][2], run])
        else:
            out.append((start, end, [run]))
    return out


def _plausible(window: str, start: int, raw: str) -> bool:
    """What libphonenumber accepts but prose disagrees with (each case was found in SciFact or SQuAD):
    - a number glued to a word before it: ZIP+4 94103-1234 is not +49 4103 1234, PF-04449913 640 is
      a drug code;
    - fewer than 9 digits without a country code: every national format of `PHONE_REGIONS` with its
      area code has 9 or more, while "1600 1700" (valid in CN, KR) and "0317-8471" (an ISSN, valid
      in IT) are years and ids;
    - two numbers joined by a dash or slash, ascending, the first without a trunk 0: page ranges
      (12442-12448), confidence intervals (6790-13 722) and ratios (11 256/20 849)."""
    before = window[start - 1] if start else " "
    glued = start >= 2 and before in "-/" and window[start - 2].isalnum()
    if (before.isascii() and before.isalnum()) or glued:
        return False
    if raw.lstrip("(").startswith("+"):
        return True
    if sum(c.isdigit() for c in raw) < 9:
        return False
    pair = NUMBER_PAIR.fullmatch(raw)
    if pair and not pair[1].startswith("0"):
        first, second = (int(g.replace(" ", "")) for g in pair.groups())
        return first >= second
    return True


def phones(text: str, runs: list[tuple[int, int]], regions: tuple[str, ...] = PHONE_REGIONS) -> list[Span]:
    windows = _windows(text, runs)
    if not windows:
        return []
    from phonenumbers import Leniency, PhoneNumberMatcher

    found: dict[tuple[int, int], Span] = {}
    for a, b, held in windows:
        window = text[a:b]
        keep_out = protected(window)
        hits: list[tuple[int, int]] = []
        for region in regions:
            for m in PhoneNumberMatcher(window, region, leniency=Leniency.VALID):
                protected_here = any(m.start < e and s < m.end for s, e in keep_out)
                if not protected_here and _plausible(window, m.start, m.raw_string):
                    hits.append((a + m.start, a + m.end))
            # Once every cluster is inside a number, other regions can only re-find it: stop early
            # (a number written with +country code is found by the first region).
            if all(any(s <= run_s and run_e <= e for s, e in hits) for run_s, run_e in held):
                break
        for run_s, run_e in held:
            # "+" and 8 digits or more is a phone number even when its country's plan says it cannot
            # be (a mistyped or outdated number still identifies someone): +31-20-914-738.
            raw = text[run_s:run_e]
            if (raw.startswith("+") and sum(c.isdigit() for c in raw) >= 8 and _plausible(window, run_s - a, raw)
                    and not any(run_s < e and s < run_e for s, e in hits)
                    and not any(run_s - a < e and s < run_e - a for s, e in keep_out)):
                hits.append((run_s, run_e))
        for s, e in hits:
            found.setdefault((s, e), Span(s, e, "PHONE"))
    return list(found.values())


def find(text: str) -> list[Span]:
    """Every personal-data span, sorted and non-overlapping. Kinds are tried most specific first
    (an e-mail holds digits that look like a phone, an IBAN holds a card-like run) and a later
    span that overlaps an earlier one is dropped."""
    found = [*emails(text), *ibans(text)]
    runs = clusters(text)
    if runs:
        found += [*cards(text, runs), *phones(text, runs)]
    taken: list[Span] = []
    for span in found:
        if not any(span.start < t.end and t.start < span.end for t in taken):
            taken.append(span)
    return sorted(taken)
