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
    text = unicodedata.normalize("NFKC", text)
    text = _WHITESPACE.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)
    return _WHITESPACE.sub(" ", text).strip()
