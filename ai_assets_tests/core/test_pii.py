"""PII masking corpus: what must become a token, and what must stay as written.

Each example is embedded in a sentence, so the test also proves the mask covers exactly the
identifier: nothing of it is left, and no neighbouring word is eaten.
"""

from collections import Counter

import pytest

from ai_assets.core.dataset import load_banking77
from ai_assets.core.normalise import normalise_text
from ai_assets.core.pii import mask_pii
from ai_assets.core.simulator import PII_SAMPLES

POSITIVES = [
    # Card numbers: schemes, lengths and the ways people group them.
    ("4111 1111 1111 1111", "CARD"),
    ("4111-1111-1111-1111", "CARD"),
    ("4111111111111111", "CARD"),
    ("5500 0000 0000 0004", "CARD"),
    ("5555-5555-5555-4444", "CARD"),
    ("3782 822463 10005", "CARD"),  # Amex 4-6-5
    ("378282246310005", "CARD"),
    ("6011000990139424", "CARD"),  # Discover
    ("4222222222222", "CARD"),  # 13-digit Visa
    ("6759 6498 2643 8453 123", "CARD"),  # 19-digit Maestro
    # IBANs from several countries, grouped and compact, upper and lower case.
    ("GB82 WEST 1234 5698 7654 32", "IBAN"),
    ("GB82WEST12345698765432", "IBAN"),
    ("gb82 west 1234 5698 7654 32", "IBAN"),
    ("DE89 3704 0044 0532 0130 00", "IBAN"),
    ("DE89370400440532013000", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606", "IBAN"),
    ("NL91 ABNA 0417 1643 00", "IBAN"),
    ("ES91 2100 0418 4502 0005 1332", "IBAN"),
    ("IE29 AIBK 9311 5212 3456 78", "IBAN"),
    ("BE68 5390 0754 7034", "IBAN"),
    ("CH93 0076 2011 6238 5295 7", "IBAN"),
    ("IT60 X054 2811 1010 0000 0123 456", "IBAN"),
    # E-mail addresses.
    ("jane.doe@example.com", "EMAIL"),
    ("john+bank@mail.co.uk", "EMAIL"),
    ("A.B-C_d@sub.example.org", "EMAIL"),
    ("user123@gmail.com", "EMAIL"),
    # International phone numbers.
    ("+44 20 7946 0958", "PHONE"),
    ("+44 7700 900123", "PHONE"),
    ("+44 (0)20 7946 0958", "PHONE"),
    ("+1 (415) 555-2671", "PHONE"),
    ("+1 415 555 2671", "PHONE"),
    ("+1-415-555-2671", "PHONE"),
    ("+49 30 12345678", "PHONE"),
    ("+4915112345678", "PHONE"),
    ("+31 20 123 4567", "PHONE"),
    ("+353 1 234 5678", "PHONE"),  # Dublin: one-digit area code
    ("+33 1 23 45 67 89", "PHONE"),  # Paris
    ("+33 6 12 34 56 78", "PHONE"),  # French mobile
    ("+33 (0)1 23 45 67 89", "PHONE"),
    # National phone numbers.
    ("020 7946 0958", "PHONE"),
    ("07700 900123", "PHONE"),
    ("0171 234 5678", "PHONE"),
    ("(415) 555-2671", "PHONE"),
    ("415-555-2671", "PHONE"),
    ("415.555.2671", "PHONE"),
    ("030 12345678", "PHONE"),
    ("01 23 45 67 89", "PHONE"),
]

NEGATIVES = [
    # Amounts.
    "I was charged 1,000.50 twice",
    "my balance is £1,000,000.00",
    "transfer €1.000.000,00 to savings",
    "I sent 1 000 000 EUR",
    "USD 1,500 and GBP2500",
    "three payments of 19.99, 19.99 and 19.99",
    # Dates and times.
    "the payment on 12/03/2024 is missing",
    "the payment on 2024-03-12 is missing",
    "from 01.03.2024 to 31.03.2024",
    "charged on 12-03-2024",
    "12 03 2024 was the date",
    "on 2024-03-12 10:30 I was charged twice",
    "2024-03-12 10:30:00 transfer of 25.00",
    "at 10:30 2024-03-12 I paid",
    "on 12/03/2024 10:30 it failed",
    "timestamp 2024-03-12T10:30:00Z",
    "between 2019-2024",
    "it is 23:59:59 now",
    # Short numbers and card fragments people may safely mention.
    "card ending 4321",
    "**** **** **** 4321 expiring 03/27",
    "my PIN is 1234",
    "the code was 123456",
    "order 12345678",
    "sort code 12-34-56",
    "ref 4567 8901",
    # Percentages and versions.
    "the fee is 3.5% or 12.5%",
    "app version 1.2.3",
    # Letters and digits that are not IBANs.
    "flight BA2490 was cancelled",
    "I am 35 years old and have 2 cards",
]


@pytest.mark.parametrize("value, kind", POSITIVES, ids=[p[0] for p in POSITIVES])
def test_identifier_is_masked_to_its_token(value, kind):
    masked, counts = mask_pii(f"Hi, it is {value} thanks")
    assert masked == f"Hi, it is [{kind}] thanks"
    assert counts == Counter({kind: 1})


@pytest.mark.parametrize("value, kind", POSITIVES, ids=[p[0] for p in POSITIVES])
def test_identifier_is_masked_at_the_edges_of_the_text(value, kind):
    assert mask_pii(value) == (f"[{kind}]", Counter({kind: 1}))
    assert mask_pii(f"({value}).")[0] == f"([{kind}])."


@pytest.mark.parametrize("text", NEGATIVES)
def test_non_identifier_is_left_alone(text):
    assert mask_pii(text) == (text, Counter())


@pytest.mark.parametrize("text, expected", [
    ("BE68 5390 0754 7034 from my account", "[IBAN] from my account"),
    ("ES91 2100 0418 4502 0005 1332 is mine", "[IBAN] is mine"),
    ("my iban: DE89 3704 0044 0532 0130 00 ok", "my iban: [IBAN] ok"),
])
def test_iban_mask_does_not_eat_the_next_words(text, expected):
    assert mask_pii(text) == (expected, Counter({"IBAN": 1}))


def test_several_identifiers_in_one_message_are_counted():
    text = ("Card 4111 1111 1111 1111 and 5500-0000-0000-0004, IBAN GB82 WEST 1234 5698 7654 32, "
            "mail jane.doe@example.com or call +44 20 7946 0958 / 020 7946 0958")
    masked, counts = mask_pii(text)
    assert masked == "Card [CARD] and [CARD], IBAN [IBAN], mail [EMAIL] or call [PHONE] / [PHONE]"
    assert counts == Counter({"CARD": 2, "IBAN": 1, "EMAIL": 1, "PHONE": 2})


def test_masking_is_idempotent():
    text = "call +44 20 7946 0958, card 4111 1111 1111 1111, jane@example.com"
    once, _ = mask_pii(text)
    assert mask_pii(once) == (once, Counter())


def test_obfuscated_identifiers_are_masked_after_normalisation():
    # Full-width digits and zero-width spaces must not smuggle a card number past the mask:
    # validation normalises before it masks.
    text = "card ４１１１ １１１１ １１１１ １１１１ and 4111\u200b1111\u200b1111\u200b1111"
    assert mask_pii(normalise_text(text)) == ("card [CARD] and [CARD]", Counter({"CARD": 2}))


@pytest.mark.parametrize("sample", PII_SAMPLES)
def test_simulator_pii_samples_are_masked_once(sample):
    masked, counts = mask_pii(sample)
    assert sum(counts.values()) == 1
    assert not any(ch.isdigit() for ch in masked) and "@" not in masked


def test_no_banking77_query_is_masked():
    # The real customer queries carry amounts, dates and card-ending digits but no identifiers;
    # a false positive here would corrupt the text every model is trained and scored on.
    masked = [(row.text, mask_pii(row.text)[0]) for row in load_banking77() if mask_pii(row.text)[1]]
    assert masked == []
