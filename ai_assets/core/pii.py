"""PII masking, applied before any model, log or quarantine record sees a message.

Each kind of identifier becomes a fixed token, so masked text stays deterministic and a
model still sees that, say, a card number was mentioned. Order matters: e-mail addresses
and IBANs are masked before the digit-run patterns that would otherwise eat parts of them.
"""

from __future__ import annotations

import re
from collections import Counter

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Country code, two check digits, 11-30 alphanumerics in optional groups of four.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
# 13-19 digits, optionally grouped by single spaces or dashes: every card scheme's length.
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International (+CC ...) or national numbers with at least 9 digits in common groupings.
# After a country code may come a trunk "(0)" and a one-digit area code (+33 (0)1 ...,
# +353 1 ...). A run that touches a clock time ("2024-03-12 10:30") is a date and a time,
# not a number to mask.
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d:)(?:\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?(?:\d[ .-])?)?(?:\(\d{2,5}\)[ .-]?)?"
    r"\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?!\w|:\d)"
)

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", _EMAIL),
    ("IBAN", _IBAN),
    ("CARD", _CARD),
    ("PHONE", _PHONE),
)


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    # Nine digits is the shortest national number we mask; amounts like "1,000" or
    # dates like "12-03-2024" have fewer digits or are not written this way.
    return 9 <= digits <= 15


def _iban_core(candidate: str) -> str:
    # Case-insensitive groups also match words after the number ("... 7034 is mine"); an
    # IBAN ends in its account number, so trailing space-separated groups without a digit
    # are text, not part of it.
    groups = candidate.split(" ")
    while len(groups) > 1 and not any(ch.isdigit() for ch in groups[-1]):
        groups.pop()
    return " ".join(groups)


def _has_letter_and_digit(candidate: str) -> bool:
    return any(ch.isdigit() for ch in candidate[4:]) and any(ch.isalpha() for ch in candidate[:2])


def mask_pii(text: str) -> tuple[str, Counter[str]]:
    """Return the masked text and how many spans of each kind were masked."""
    counts: Counter[str] = Counter()
    for kind, pattern in PATTERNS:

        def replace(match: re.Match[str], kind: str = kind) -> str:
            value = match.group(0)
            if kind == "PHONE" and not _is_phone(value):
                return value
            rest = ""
            if kind == "IBAN":
                core = _iban_core(value)
                if not _has_letter_and_digit(core):
                    return value
                rest = value[len(core):]
            counts[kind] += 1
            return f"[{kind}]{rest}"

        text = pattern.sub(replace, text)
    return text, counts
