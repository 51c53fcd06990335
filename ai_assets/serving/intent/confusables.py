"""Fold look-alike characters to ASCII, to compare text with ASCII identifiers such as label names.

`rеfund_not_showing_up` with a Cyrillic е (U+0435) renders as the label name and a model reads
it as one, but it is a different string: a guard that compares raw text lets it through.
`fold_confusables` maps such text to the ASCII string it passes for:

  1. format characters are dropped (zero-width spaces and joiners, word joiner, BOM, soft
     hyphen, bidi controls, tag characters; Unicode category Cf) and so are variation
     selectors: they render as nothing, so `refund\\u200b_not_showing_up` is the label;
  2. NFKC: full-width forms (ｒｅｆｕｎｄ, ＿), mathematical alphanumerics (𝐫𝐞𝐟𝐮𝐧𝐝),
     ligatures, superscripts and the like become their plain letters;
  3. `_LOOKALIKES`: letters of other scripts that render as a Latin letter, and characters
     that render as a low line, become that ASCII character (`_BEFORE_NFKC` does so for the
     few that NFKC would first turn into something else);
  4. casefold, so the comparison ignores case as well.

The table is a curated subset of Unicode's confusables data (UTS #39, confusables.txt), not
all of it, on purpose. The full data runs to thousands of entries, is not in the standard
library (it would mean a new dependency or a vendored data file to keep current), and its
"skeleton" is built for comparing two strings with each other, not with ASCII: it also folds
ASCII into ASCII (`1` and `I` into `l`) and maps some letters to non-ASCII look-alikes. What
spelling a snake_case label name takes is a Latin look-alike for each of its letters and for
the underscore; the few dozen Cyrillic, Greek, Armenian and Latin-extension letters below are
the common ones, those that render as the Latin letter in ordinary fonts. ASCII itself is the
target alphabet and is left alone: `sh0wing` is not `showing` to this fold.

The result is for comparison, not for display: it is lossy (Russian and Greek words turn into
a mix of Latin and their own letters).
"""

from __future__ import annotations

import unicodedata

# Before NFKC, the look-alikes whose compatibility form no longer looks like the ASCII they
# pass for: U+2017 DOUBLE LOW LINE becomes a space and a combining mark, the Greek lunate
# sigma symbols ϲ Ϲ (shaped like c C) become the sigmas ς Σ.
_BEFORE_NFKC = str.maketrans({"\u2017": "_", "ϲ": "c", "Ϲ": "c"})

_LOOKALIKES: dict[str, str] = {
    # Cyrillic, lower and upper case (folded to lower case here; casefold follows anyway).
    "а": "a", "А": "a", "В": "b", "г": "r", "ԁ": "d", "е": "e", "Е": "e", "һ": "h", "Һ": "h",
    "Н": "h", "і": "i", "І": "i", "ӏ": "l", "Ӏ": "l", "ј": "j", "Ј": "j", "к": "k", "К": "k",
    "М": "m", "о": "o", "О": "o", "р": "p", "Р": "p", "ԛ": "q", "Ԛ": "q", "с": "c", "С": "c",
    "ѕ": "s", "Ѕ": "s", "Т": "t", "у": "y", "У": "y", "Ү": "y", "ԝ": "w", "Ԝ": "w", "х": "x",
    "Х": "x",
    # Greek.
    "α": "a", "Α": "a", "Β": "b", "Ε": "e", "η": "n", "Η": "h", "ι": "i",
    "Ι": "i", "ϳ": "j", "Ϳ": "j", "κ": "k", "Κ": "k", "Μ": "m", "ν": "v", "Ν": "n", "ο": "o",
    "Ο": "o", "ρ": "p", "Ρ": "p", "Τ": "t", "υ": "u", "γ": "y", "Υ": "y", "χ": "x", "Χ": "x",
    "Ζ": "z",
    # Armenian.
    "ց": "g", "հ": "h", "ո": "n", "օ": "o", "Օ": "o", "զ": "q", "ս": "u",
    # Latin letters outside ASCII that pass for ASCII ones.
    "ɑ": "a", "ɡ": "g", "ı": "i", "ɩ": "i", "İ": "i", "ȷ": "j", "ǀ": "l",
    # Low-line look-alikes that NFKC leaves alone (＿ and ﹍ ﹎ ﹏ it folds itself): modifier
    # low macron, combining low lines (drawn under the previous letter, in the gap), block
    # and scan-line glyphs.
    "\u02cd": "_", "\u0332": "_", "\u0333": "_", "\u2581": "_", "\u23bd": "_",
}
_TABLE = str.maketrans(_LOOKALIKES)

# Variation selectors and the combining grapheme joiner are marks (Mn), not format
# characters, but they too render as nothing.
_INVISIBLE_MARKS = frozenset(
    [0x034F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf" or ord(ch) in _INVISIBLE_MARKS


def _drop_invisible(text: str) -> str:
    return "".join(ch for ch in text if not _is_invisible(ch))


def fold_confusables(text: str) -> str:
    """`text` as the ASCII it looks like, case-folded, for comparison with ASCII identifiers."""
    if text.isascii():  # nothing to fold but case
        return text.casefold()
    text = _drop_invisible(text).translate(_BEFORE_NFKC)
    text = unicodedata.normalize("NFKC", text)
    return text.translate(_TABLE).casefold()
