"""Deterministic text normalisation: NFKC, invisible characters gone, whitespace collapsed."""

import random
import unicodedata

import pytest

from ai_assets.ingestion.normalise import normalise_text


@pytest.mark.parametrize("text, expected", [
    # NFKC: compatibility forms fold to their plain equivalents.
    ("ｍｙ ｃａｒｄ ｉｓ ｌｏｓｔ", "my card is lost"),  # full-width letters
    ("１２３４", "1234"),  # full-width digits: PII patterns must see them as digits
    ("ﬁnd my ﬂat ﬀee", "find my flat ffee"),  # ligatures
    ("Ⅻ ½ ²", "XII 1⁄2 2"),  # roman numeral, vulgar fraction, superscript
    ("caf\u0065\u0301", "café"),  # decomposed é composes
    ("\u212b", "Å"),  # ANGSTROM SIGN -> LATIN CAPITAL A WITH RING
    # Invisible characters: zero-width space/joiner/non-joiner, BOM, soft hyphen, bidi marks.
    ("\ufeffhello", "hello"),
    ("top\u200bup", "topup"),
    ("top\u200c\u200dup", "topup"),
    ("re\u00adfund", "refund"),
    ("\u202ecard\u202c", "card"),
    ("\u2066hi\u2069", "hi"),
    # Whitespace: tabs, newlines, non-breaking and ideographic spaces collapse to one space.
    ("  where\tis \n\n my   card  ", "where is my card"),
    ("a\u00a0b\u2003c\u3000d\u2028e\u0085f", "a b c d e f"),
    ("a\r\nb", "a b"),
    ("a \u200b b", "a b"),  # a removed character leaves no double space
    ("\x00a\x07b", "ab"),  # control characters
    ("", ""),
    (" \t\n\u200b ", ""),
])
def test_normalise(text, expected):
    assert normalise_text(text) == expected


def test_invisible_character_between_letter_and_accent_gives_the_same_text():
    # Look-alike inputs must normalise to the same bytes, or de-duplication and caches miss.
    assert normalise_text("caf\u0065\u200b\u0301") == normalise_text("café") == "café"


def test_look_alikes_normalise_to_the_same_text():
    variants = ["Top up failed", "Ｔｏｐ ｕｐ ｆａｉｌｅｄ", "\ufeffTop\u00a0up\tfailed ", "Top\u200b up  failed"]
    assert {normalise_text(v) for v in variants} == {"Top up failed"}


def test_ordinary_text_is_untouched():
    text = "I'd like to know why my top-up of £20.50 (on 12/03/2024) didn't go through?"
    assert normalise_text(text) == text


TRICKY = ["a", "e", "é", " ", "\t", "\n", "\r", "\x00", "\u200b", "\u200d", "\ufeff", "\u00ad",
          "\u0301", "\u0308", "\u0327", "\u0345", "\u00a0", "\u2003", "\u3000", "\u2028", "\u0085",
          "ﬁ", "ｆ", "１", "¨", "\u00b4", "\u212b", "Å", "\u2126", "\u03b9", "\u1fbe", "\u037a",
          "\u1100", "\u1161", "\u11a8", "가", "💳", "\u180e"]


def test_normalising_is_idempotent_and_yields_nfkc():
    rng = random.Random(20240311)
    for _ in range(20_000):
        text = "".join(rng.choice(TRICKY) for _ in range(rng.randrange(1, 10)))
        once = normalise_text(text)
        assert normalise_text(once) == once, repr(text)
        assert unicodedata.normalize("NFKC", once) == once, repr(text)
        assert once == once.strip() and "  " not in once, repr(text)
