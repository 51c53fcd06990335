"""PII masking, applied before any model, log or quarantine record sees a message.

Each kind of identifier becomes a fixed token, so masked text stays deterministic and a
model still sees that, say, a card number was mentioned. Order matters: e-mail addresses
and IBANs are masked before the digit-run patterns that would otherwise eat parts of them.

Masking also runs on excerpts of raw lines that failed to parse, so the patterns read JSON
string escapes as the characters they stand for: `\\u00a0` (six characters) is a no-break
space, `\\/` a slash, `\\u00fc` a letter of an address.

Masking is linear in the length of the text: a number's pattern is bounded by its digit
count (and so is its backtracking), an address is tried only from the start of a run of
address characters (a lookbehind), and no two alternatives of an address character match the
same character, so the engine never tries the same split of an address twice.
"""

from __future__ import annotations

import re
from collections import Counter

# --- JSON escapes in raw lines ------------------------------------------------------------

_JSON_U_ESCAPE = r"\\u[0-9a-fA-F]{4}"
# After an escape a number starts afresh ("\n020 7946 0958", "\u00a0+44 ..."), although the
# escape ends in a letter or digit. One lookbehind per width: lookbehinds are fixed-width.
_AFTER_JSON_ESCAPE = rf"(?<=\\[nrtbf])|(?<={_JSON_U_ESCAPE})"
# ... but a number never starts inside one: "2007" in "\u2007" is a figure space, not digits.
_NOT_INSIDE_JSON_ESCAPE = r"(?<!\\u)(?<!\\u[0-9a-fA-F])(?<!\\u[0-9a-fA-F]{2})(?<!\\u[0-9a-fA-F]{3})"


def _json_escape(ch: str) -> str:
    """A regex for `ch` as a JSON encoder writes it: `\\u00a0`, hex digits in either case."""
    return rf"\\u(?i:{ord(ch):04x})"


def _separator(chars: str) -> str:
    """A regex for one separator between digit groups: one of `chars`, or how JSON writes it."""
    alternatives = ["[" + re.escape(chars) + "]"]
    alternatives += [_json_escape(ch) for ch in chars if not ch.isascii()]
    if "/" in chars:
        alternatives.append(r"\\/")  # JSON may escape a slash, and some encoders always do
    return "(?:" + "|".join(alternatives) + ")"


# --- digit groups: cards, phones, IBANs ---------------------------------------------------

# Copy-paste and locale formatting put no-break spaces between digit groups: U+00A0, U+2007
# (figure space, made for digits) and U+202F (narrow no-break space, the French and Swiss
# thousands separator).
_SPACES = " \u00a0\u2007\u202f"
_GROUP_SPACE = _separator(_SPACES)
_CARD_SEPARATOR = _separator(_SPACES + "-./_")
_PHONE_SEPARATOR = _separator(_SPACES + "-./")
_GROUP_SPACE_RE = re.compile(_GROUP_SPACE)
_CARD_SEPARATOR_RE = re.compile(_CARD_SEPARATOR)
_PHONE_SEPARATOR_RE = re.compile(_PHONE_SEPARATOR)

# Country code, two check digits, 11-30 alphanumerics in optional groups of four.
_IBAN = re.compile(
    rf"(?:(?<!\w)|{_AFTER_JSON_ESCAPE})[A-Z]{{2}}\d{{2}}"
    rf"(?:{_GROUP_SPACE}?[A-Z0-9]{{4}}){{2,7}}(?:{_GROUP_SPACE}?[A-Z0-9]{{1,3}})?\b",
    re.IGNORECASE,
)
# 13-19 digits, written as one run or grouped by single separators: every card scheme's
# length. The unbroken run is tried first so that "4111111111111111 12/27" (a card and its
# expiry) is the card, not a 19-digit run with a 16-digit group that _is_card rejects. Not
# inside a longer dash-joined digit run, but after a word's dash ("c-4111...", an id).
_CARD = re.compile(  # (?=\d) first: most positions fail there, before the lookbehinds
    rf"(?=\d){_NOT_INSIDE_JSON_ESCAPE}(?:(?<![\d+-])|(?<=[^\W\d_]-)|{_AFTER_JSON_ESCAPE})"
    rf"(?:\d{{13,19}}|\d(?:{_CARD_SEPARATOR}?\d){{12,18}})(?![\d-])"
)
# International (+CC ...) or national numbers with at least 9 digits in common groupings.
# After a country code may come a trunk "(0)" and a one-digit area code (+33 (0)1 ...,
# +353 1 ...). A run that touches a clock time ("2024-03-12 10:30") is a date and a time,
# not a number to mask.
_P = _PHONE_SEPARATOR
_PHONE = re.compile(
    rf"(?=[\d+(]){_NOT_INSIDE_JSON_ESCAPE}(?:(?<![\w+])|{_AFTER_JSON_ESCAPE})(?<!\d:)"
    rf"(?:\+\d{{1,3}}{_P}?(?:\(0\){_P}?)?(?:\d{_P})?)?(?:\(\d{{2,5}}\){_P}?)?"
    rf"\d{{2,5}}(?:{_P}?\d{{2,5}}){{1,4}}(?!\w|:\d)"
)

# --- e-mail addresses ---------------------------------------------------------------------

# RFC 6531 lets any non-ASCII character into an address, so an address is cut not at the
# end of a known alphabet but at what ends one in prose: spaces, punctuation and brackets.
# Missing a punctuation mark here masks a little too much, never too little.
_NON_ASCII_PUNCTUATION = (
    "\u00a0-\u00bf\u00d7\u00f7"  # Latin-1: no-break space, ¡ « » ¿ and signs, × ÷
    "\u060c\u061b\u061f\u06d4\u0964\u0965"  # Arabic comma, semicolon, ?, full stop; dandas
    "\u2000-\u206f"  # General Punctuation: spaces, dashes, quotes, ellipsis, zero-width
    "\u2e00-\u2e7f"  # Supplemental Punctuation
    "\u3000-\u3004\u3008-\u3020\u3030\u303d\u30fb"  # CJK space, 、。, brackets 「」【】, ・
    "\ufe10-\ufe1f\ufe30-\ufe6f\ufeff"  # vertical and small forms (﹫ small at), BOM
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65"  # full- and half-width punctuation
)
_NON_ASCII_WORD = rf"[^\x00-\x7f\s{_NON_ASCII_PUNCTUATION}]"
# Raw lines write those as escapes too; the ones that matter: Latin-1 punctuation, General
# Punctuation, CJK space, comma and full stop, and the full-width and small dots and at signs.
_PUNCTUATION_HEX = "00[ab][0-9a-f]|20[0-6][0-9a-f]|300[0-3]|ff0e|ff20|ff61|fe6b"
_ESCAPED_WORD = rf"\\u(?!(?i:{_PUNCTUATION_HEX}))[0-9a-fA-F]{{4}}"
_ESCAPED_PUNCTUATION = rf"\\u(?i:{_PUNCTUATION_HEX})"
# The ASCII classes exclude every non-ASCII character, so no two alternatives match the same
# character: an overlap would let the engine try each split twice over (exponential).
_LOCAL_CHAR = rf"(?:[A-Za-z0-9_.%+\-]|{_NON_ASCII_WORD}|{_ESCAPED_WORD})"
_LABEL_CHAR = rf"(?:[A-Za-z0-9\-]|{_NON_ASCII_WORD}|{_ESCAPED_WORD})"
_TLD_CHAR = rf"(?:[A-Za-z]|{_NON_ASCII_WORD}|{_ESCAPED_WORD})"
# IDNA reads the ideographic and full-width full stops as dots (用户@例子。广告).
_DOT = r"(?:[.\u3002\uff0e\uff61]|\\u(?i:3002|ff0e|ff61))"
_AT = r"(?:[@\uff20\ufe6b]|\\u(?i:ff20|fe6b))"
# Only from the start of a run of address characters: tried from every character of a long
# run, the pattern would rescan the rest of the run each time (quadratic). The run is taken
# whole, longer than RFC 5321's 64 characters or not: in scripts without spaces the words
# before an address join its run, and masking them beats leaving the address. A run starts
# after a non-address character or the escape of one ("mail\u00a0jane@...", "mail\njane@"),
# but never on the letter of an escape (after "\u", that would start a second attempt at
# every escaped letter).
_LOCAL_START = (
    rf"(?:(?<![A-Za-z0-9_.%+\-])(?<!{_NON_ASCII_WORD})|(?<={_ESCAPED_PUNCTUATION})|(?<=\\[nrtbf]))"
    r"(?!(?<=\\)(?:[nrtbf]|u[0-9a-fA-F]{4}))"
)
_LOCAL = rf"{_LOCAL_START}{_LOCAL_CHAR}+"
# RFC 5321 limits: 63 characters per domain label, 127 labels.
_LABEL = rf"{_LABEL_CHAR}{{1,63}}"
_TLD = rf"(?:xn--[A-Za-z0-9\-]{{1,59}}|{_TLD_CHAR}{{2,63}})"


def _domain(dot: str, max_labels: int) -> str:
    return rf"{_LABEL}(?:{dot}{_LABEL}){{0,{max_labels - 2}}}{dot}{_TLD}"


_EMAIL = re.compile(rf"{_LOCAL}{_AT}{_domain(_DOT, 127)}")


# Addresses spelled out against harvesters: "john at example dot com", "john [at] example
# [dot] com", "john(at)example(dot)co(dot)uk". A bracketed "at" is never prose, so its domain
# may use plain dots; a bare " at " is ("I paid at amazon.com"), so its dots must be spelled.
def _bracketed(word: str) -> str:
    return rf"\s*[\[({{<]\s*(?i:{word})\s*[\])}}>]\s*"


_SPELLED_DOT = rf"(?:\s+(?i:dot)\s+|{_bracketed('dot')})"
_OBFUSCATED_EMAIL = re.compile(
    rf"{_LOCAL}(?:{_SPELLED_DOT}{_LOCAL}){{0,4}}"
    rf"(?:{_bracketed('at')}{_domain(f'(?:{_SPELLED_DOT}|{_DOT})', 10)}"
    rf"|\s+(?i:at)\s+{_domain(_SPELLED_DOT, 10)})"
)

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", _EMAIL),
    ("EMAIL", _OBFUSCATED_EMAIL),
    ("IBAN", _IBAN),
    ("CARD", _CARD),
    ("PHONE", _PHONE),
)


# --- deciding on a candidate --------------------------------------------------------------

def _digits(candidate: str, separator: re.Pattern[str]) -> str:
    # Separators go first: the escape "\u2007" carries four digits that are not the number's.
    return "".join(ch for ch in separator.sub(" ", candidate) if ch.isdigit())


def _is_phone(candidate: str) -> bool:
    # Nine digits is the shortest national number we mask; amounts like "1,000" or
    # dates like "12-03-2024" have fewer digits or are not written this way.
    return 9 <= len(_digits(candidate, _PHONE_SEPARATOR_RE)) <= 15


def _is_card(candidate: str) -> bool:
    # Dots and underscores also join the parts of decimals, ids and timestamps
    # ("1710234567.123456", "20240312_103000"). A card is printed in groups of four (Amex and
    # Diners 4-6-5, 4-6-4), so with those separators a longer group is not a card. Spaces and
    # dashes keep any grouping: a removed zero-width space leaves "41111111 1111 1111".
    if "." not in candidate and "_" not in candidate:
        return True
    return max(len(group) for group in _CARD_SEPARATOR_RE.split(candidate)) <= 6


def _iban_core(candidate: str) -> str:
    # Case-insensitive groups also match words after the number ("... 7034 is mine"); an
    # IBAN ends in its account number, so trailing space-separated groups without a digit
    # are text, not part of it.
    ends = [m.start() for m in _GROUP_SPACE_RE.finditer(candidate)] + [len(candidate)]
    starts = [0] + [m.end() for m in _GROUP_SPACE_RE.finditer(candidate)]
    while len(ends) > 1 and not any(ch.isdigit() for ch in candidate[starts[-1]:ends[-1]]):
        starts.pop()
        ends.pop()
    return candidate[:ends[-1]]


def _has_letter_and_digit(candidate: str) -> bool:
    return any(ch.isdigit() for ch in candidate[4:]) and any(ch.isalpha() for ch in candidate[:2])


def _replacement(kind: str, value: str) -> tuple[str, str] | None:
    """(token, text to keep after it) for a candidate to mask, or None to leave it."""
    if kind == "PHONE" and not _is_phone(value):
        return None
    if kind == "CARD" and not _is_card(value):
        return None
    if kind == "IBAN":
        core = _iban_core(value)
        if not _has_letter_and_digit(core):
            return None
        return f"[{kind}]", value[len(core):]
    return f"[{kind}]", ""


# A rejected card candidate may hide a card inside it ("12.4111111111111111": a 2-16 grouping
# by a dot is not a card, the 16-digit run is): look again from its next character. Other kinds go on
# after the candidate, as re.sub does. Either way each position starts at most one bounded
# attempt, so the scan stays linear.
_LOOK_INSIDE_REJECTED = frozenset({"CARD"})


def _mask_kind(text: str, kind: str, pattern: re.Pattern[str], counts: Counter[str]) -> str:
    pieces: list[str] = []
    kept = search_from = 0
    while match := pattern.search(text, search_from):
        replacement = _replacement(kind, match.group(0))
        if replacement is None:
            search_from = match.start() + 1 if kind in _LOOK_INSIDE_REJECTED else match.end()
            continue
        token, rest = replacement
        pieces += [text[kept:match.start()], token, rest]
        kept = search_from = match.end()
        counts[kind] += 1
    pieces.append(text[kept:])
    return "".join(pieces)


def mask_pii(text: str) -> tuple[str, Counter[str]]:
    """Return the masked text and how many spans of each kind were masked."""
    counts: Counter[str] = Counter()
    for kind, pattern in PATTERNS:
        text = _mask_kind(text, kind, pattern, counts)
    return text, counts


def contains_pii(text: str) -> bool:
    """True when mask_pii would mask anything in `text` (say, an id that carries a card number)."""
    return bool(mask_pii(text)[1])
