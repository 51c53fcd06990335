"""Deterministic text normalisation: the same input gives the same bytes, everywhere."""

from __future__ import annotations

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
# Control and format characters (zero-width spaces, BOMs, bidi marks) carry no meaning
# for intent and let look-alike duplicates through; tabs and newlines become spaces first.
_INVISIBLE_CATEGORIES = {"Cc", "Cf"}


def normalise_text(text: str) -> str:
    """Unicode NFKC, invisible characters removed, whitespace runs collapsed, ends trimmed."""
    if text.isascii() and text.isprintable():
        # Printable ASCII is already NFKC with no invisible characters; only spaces to fold.
        return " ".join(text.split())
    text = unicodedata.normalize("NFKC", text)
    text = _WHITESPACE.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    # A removed character may have stood between a letter and its combining mark
    # ("e\u200b\u0301"): normalise again so the result is NFKC and normalising is idempotent.
    text = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", text).strip()
