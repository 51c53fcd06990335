"""What a message id and a customer id may look like, and which ids carry PII.

Ids travel further than text: into case rows, outbox rows, webhook events, the audit log and
the e-mail recipient (`<customer_id>@<customer domain>`). So the contract admits only short
tokens of letters, digits and `._-` — no `@`, comma, quote, space or line break can reach a
header — at most 64 characters (the database columns' width), and refuses an id that is
itself a card number or an IBAN, since masking an id would break the case and the address.
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 64
# Anchored with \Z, not $: `$` also matches before a trailing newline.
# No `..` and no trailing `.`: both make an invalid e-mail local part.
ID_REGEX = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?![.]|\Z)){0,63}\Z"
ID_PATTERN = re.compile(ID_REGEX)
_SEPARATORS = re.compile(r"[._-]")
_DIGITS = re.compile(r"\d+")
# How card numbers are written in groups (Visa/Mastercard 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4):
# only these groupings count, so a UUID's 8-4-4-4-12 digit groups are never taken for a card.
_CARD_GROUPINGS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}
# IBAN length per country (the SWIFT registry, the countries most seen): a fixed length per
# country is what keeps a random hexadecimal id from passing the mod-97 check by chance.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_iban(candidate: str) -> bool:
    candidate = candidate.upper()
    if _IBAN_LENGTHS.get(candidate[:2]) != len(candidate) or not candidate[2:4].isdigit():
        return False
    if not candidate.isalnum() or not candidate.isascii():
        return False
    rearranged = candidate[4:] + candidate[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _has_card(value: str) -> bool:
    # A run of 13-19 digits anywhere, or digit-only groups written the way cards are.
    if any(13 <= len(run) <= 19 and _luhn_valid(run) for run in _DIGITS.findall(value)):
        return True
    groups = _SEPARATORS.split(value)
    for start in range(len(groups)):
        for grouping in _CARD_GROUPINGS:
            window = groups[start:start + len(grouping)]
            if tuple(len(g) for g in window) == grouping and all(g.isdigit() for g in window) \
                    and _luhn_valid("".join(window)):
                return True
    return False


def id_pii_kind(value: object) -> str | None:
    """'CARD' or 'IBAN' when the id holds one (checksum-valid and written as they are written,
    so a random id is practically never taken for one), 'EMAIL' for an address, else None."""
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS * 4:
        return None  # not an id at all: the type and pattern expectations refuse it
    if "@" in value:
        return "EMAIL"
    if _has_card(value):
        return "CARD"
    if any(_is_iban(part) for part in (*_SEPARATORS.split(value), _SEPARATORS.sub("", value))):
        return "IBAN"
    return None


def ids_pii_label(message_id: object, customer_id: object) -> str | None:
    """Which id carries which PII (`customer_id:CARD`), or None when neither does."""
    found = [f"{name}:{kind}" for name, value in (("message_id", message_id), ("customer_id", customer_id))
             if (kind := id_pii_kind(value))]
    return ", ".join(found) or None
