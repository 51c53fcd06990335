"""Who an e-mail row can reach: `customer_address` and the mail transports' recipient checks.

The attack: a crafted customer id (`evil@attacker.example, x`) formatted into the destination
put a foreign recipient in To: and RCPT TO:. These tests use a real SMTP server on loopback
and assert on what it saw: a refused row never reaches RCPT at all.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ai_assets.actions.delivery import (
    CUSTOMER_ID_PATTERN,
    DEFAULT_RECIPIENT_DOMAIN,
    MAX_ADDRESS_CHARS,
    DeliveryFailed,
    DeliveryReport,
    FileMailSink,
    SmtpMailer,
    build_email,
    customer_address,
    deliver_due,
)
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.outbox import OutboxStore
from ai_assets.ops_db.types import utcnow
from ai_assets.resources.actions import ActionSettings
from ai_assets_tests.actions.delivery import add_rows, customer_email_spec, key_for
from ai_assets_tests.actions.delivery.test_transports import make_row
from ai_assets_tests.doubles import SmtpReceiver

DOMAIN = "customers.bank.example"
GOOD = "c-000001@customers.bank.example"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


# The attacker's destinations, as a formatted customer id (or anything else writing the row)
# could produce them. Each is refused before a connection is made.
HOSTILE_DESTINATIONS = {
    "list": "evil@attacker.example, x@customers.bank.example",
    "display-name": '"x@customers.bank.example" <evil@attacker.example>',
    "crlf": "c-000001@customers.bank.example\r\nBcc: evil@attacker.example",
    "quotes-20000": '"' * 20_000,
    "lf": "c-000001@customers.bank.example\nevil@attacker.example",
    "comment": "c-000001@customers.bank.example(evil@attacker.example)",
    "angle": "<evil@attacker.example>",
    "foreign": "evil@attacker.example",
    "group": "g:evil@attacker.example;",
    "semicolon-list": "c-000001@customers.bank.example;evil@attacker.example",
    "two-ats": "evil@attacker.example@customers.bank.example",
    "percent-hack": "evil%attacker.example@customers.bank.example",
    "bang-path": "attacker.example!evil@customers.bank.example",
    "quoted-local": '"evil@attacker.example"@customers.bank.example',
    "suffix-domain": "c-000001@customers.bank.example.attacker.example",
    "trailing-dot-domain": "c-000001@customers.bank.example.",
    "subdomain": "c-000001@evil.customers.bank.example",
    "domain-literal": "c-000001@[203.0.113.7]",
    "space": "c-000001 @customers.bank.example",
    "leading-space": " c-000001@customers.bank.example",
    "non-ascii": "c-00000é@customers.bank.example",
    "nul": "c-000001@customers.bank.example\x00",
    "local-too-long": "c" * 65 + "@customers.bank.example",
    "too-long": "c" * 64 + "@" + ("a" * 60 + ".") * 3 + "customers.bank.example",
    "comments-20000": "(" * 20_000,
    "backslashes-20000": "\\" * 20_000,
    "empty": "",
}


@pytest.mark.parametrize("destination", list(HOSTILE_DESTINATIONS.values()), ids=list(HOSTILE_DESTINATIONS))
def test_smtp_refuses_a_destination_that_is_not_one_address_in_our_domain(smtp: SmtpReceiver,
                                                                         destination: str):
    started = time.perf_counter()
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port).send(make_row(destination=destination))
    elapsed = time.perf_counter() - started
    assert failed.value.retryable is False  # the same row can never become deliverable
    # The reason is stored, audited and shown: never the (attacker-chosen) destination.
    assert "attacker" not in failed.value.reason and "evil" not in failed.value.reason
    assert destination == "" or destination not in failed.value.reason
    assert smtp.rcpts == [] and smtp.messages == []
    # A 20,000-character id took 7.7 s a send in the e-mail package's parser; it is refused unparsed.
    assert elapsed < 1.0


def test_smtp_sends_a_good_row_to_exactly_its_one_recipient(smtp: SmtpReceiver):
    SmtpMailer("127.0.0.1", smtp.port).send(make_row(destination=GOOD))
    (mail,) = smtp.messages
    assert smtp.rcpts == [GOOD]
    assert mail.to == (GOOD,)
    assert mail.headers["To"] == GOOD


def test_the_recipient_domain_is_compared_case_insensitively(smtp: SmtpReceiver):
    """DNS names are case-insensitive; the envelope keeps the row's spelling."""
    SmtpMailer("127.0.0.1", smtp.port, recipient_domain="Customers.Bank.Example").send(make_row(destination=GOOD))
    assert smtp.rcpts == [GOOD]


def test_the_recipient_domain_is_the_mailers_setting(smtp: SmtpReceiver):
    mailer = SmtpMailer("127.0.0.1", smtp.port, recipient_domain="crm.example.org")
    mailer.send(make_row(destination="c-000001@crm.example.org"))
    with pytest.raises(DeliveryFailed) as failed:
        mailer.send(make_row(n=2, destination="c-000002@customers.bank.example"))
    assert not failed.value.retryable and "recipient domain" in failed.value.reason
    assert smtp.rcpts == ["c-000001@crm.example.org"]


@pytest.mark.parametrize("domain", ["", "attacker.example, x", "a..example", "a.example.", "-a.example",
                                    "203.0.113.7", "[203.0.113.7]", "bänk.example", "a b.example",
                                    "a" * 64 + ".example", ("a" * 63 + ".") * 4 + "example", "a\n.example"])
def test_mail_transports_refuse_a_bad_recipient_domain_setting(tmp_path: Path, domain: str):
    """A misconfiguration fails when the transport is built, not as one dead row per message."""
    with pytest.raises(ValueError):
        SmtpMailer("127.0.0.1", 25, recipient_domain=domain)
    with pytest.raises(ValueError):
        FileMailSink(tmp_path, recipient_domain=domain)


@pytest.mark.parametrize("destination", list(HOSTILE_DESTINATIONS.values()), ids=list(HOSTILE_DESTINATIONS))
def test_file_mail_sink_refuses_the_same_destinations(tmp_path: Path, destination: str):
    with pytest.raises(DeliveryFailed) as failed:
        FileMailSink(tmp_path / "mail").send(make_row(destination=destination))
    assert not failed.value.retryable
    assert not (tmp_path / "mail").exists()


def test_subject_and_destination_lengths_are_bounded_before_the_message_is_built(smtp: SmtpReceiver):
    mailer = SmtpMailer("127.0.0.1", smtp.port)
    longest_local = "c" * 64
    # The longest destination allowed, in a domain configured to make it exactly 254 characters.
    domain = ".".join(["a" * 63, "b" * 63, "c" * 61])
    longest = f"{longest_local}@{domain}"
    assert len(longest) == MAX_ADDRESS_CHARS
    SmtpMailer("127.0.0.1", smtp.port, recipient_domain=domain).send(make_row(destination=longest))
    mailer.send(make_row(n=2, destination=GOOD, subject="s" * 998))
    for row in (make_row(n=3, destination=GOOD, subject="s" * 999),
                make_row(n=4, destination=GOOD, subject='"' * 20_000)):
        started = time.perf_counter()
        with pytest.raises(DeliveryFailed) as failed:
            mailer.send(row)
        assert not failed.value.retryable and "subject" in failed.value.reason
        assert time.perf_counter() - started < 1.0
    assert smtp.rcpts == [longest, GOOD]


@pytest.mark.parametrize("changes", [
    {"destination": "(" * 250}, {"destination": '"' * 254}, {"destination": "\\" * 254},
    {"destination": "<" * 254}, {"destination": "=?utf-8?q?" + "=" * 200 + "?=@customers.bank.example"},
    {"destination": None}, {"destination": 42}, {"subject": "\ud800"}, {"subject": 7}, {"subject": "(" * 998},
    {"subject": "=?utf-8?b?" + "A" * 900 + "?="}, {"payload": {"body": "\ud800"}}, {"payload": {"body": None}},
    {"payload": None}, {"payload": ["body"]}, {"idempotency_key": None}, {"created_at": None},
    {"subject": "a\r\nBcc: evil@attacker.example"},
])
def test_build_email_raises_nothing_but_delivery_failed(changes: dict):
    """Whatever a row holds, build_email either builds the message or raises DeliveryFailed
    (before: ValueError, TypeError, RecursionError, HeaderParseError escaped it)."""
    row = dataclasses.replace(make_row(destination=GOOD), **changes)
    try:
        build_email(row)
    except DeliveryFailed as exc:
        assert exc.retryable is False
    build_email(make_row(destination=GOOD))


def test_build_email_with_a_bad_domain_argument_is_a_retryable_delivery_failure():
    with pytest.raises(DeliveryFailed) as failed:
        build_email(make_row(destination=GOOD), recipient_domain="attacker.example, x")
    assert failed.value.retryable  # our configuration: fixing it makes the row deliverable


# --- Through the deliverer and the outbox (SQLite and PostgreSQL) -------------------------


def test_hostile_rows_die_at_their_first_attempt_and_the_good_one_is_delivered(ops: OpsDb,
                                                                              smtp: SmtpReceiver):
    store = OutboxStore(ops.sessions)
    hostile = [HOSTILE_DESTINATIONS[k] for k in ("list", "display-name", "crlf", "comment", "percent-hack")]
    ids = add_rows(ops.sessions, customer_email_spec(1, destination=GOOD),
                   *(customer_email_spec(n, destination=d) for n, d in enumerate(hostile, start=2)),
                   at=utcnow() - timedelta(seconds=1))
    report = deliver_due(store, {"email": SmtpMailer("127.0.0.1", smtp.port)}, max_attempts=5)
    assert report == DeliveryReport(attempted=6, delivered=1, dead=5,
                                    dead_keys=tuple(key_for(f"email-{n}") for n in range(2, 7)))
    assert smtp.rcpts == [GOOD] and [m.to for m in smtp.messages] == [(GOOD,)]
    for row_id in ids[1:]:
        row = store.get(row_id)
        assert (row.status, row.attempts) == ("dead", 1)
        assert "attacker" not in row.last_error and "@" not in row.last_error


# --- ActionSettings passes its domain on -------------------------------------------------


def test_action_settings_give_the_mail_transports_their_recipient_domain(tmp_path: Path,
                                                                        smtp: SmtpReceiver):
    default = ActionSettings(outbox_dir=str(tmp_path)).transports()["email"]
    assert isinstance(default, FileMailSink) and default.recipient_domain == DEFAULT_RECIPIENT_DOMAIN == DOMAIN

    sink = ActionSettings(outbox_dir=str(tmp_path), recipient_domain="crm.example.org").transports()["email"]
    assert isinstance(sink, FileMailSink) and sink.recipient_domain == "crm.example.org"
    with pytest.raises(DeliveryFailed):
        sink.send(make_row(destination=GOOD))
    sink.send(make_row(n=2, destination="c-000002@crm.example.org"))

    settings = ActionSettings(outbox_dir=str(tmp_path), recipient_domain="crm.example.org",
                              smtp_host="127.0.0.1", smtp_port=smtp.port)
    mailer = settings.transports()["email"]
    assert isinstance(mailer, SmtpMailer) and mailer.recipient_domain == "crm.example.org"
    with pytest.raises(DeliveryFailed):
        mailer.send(make_row(destination=GOOD))
    mailer.send(make_row(n=3, destination="c-000003@crm.example.org"))
    assert smtp.rcpts == ["c-000003@crm.example.org"]


# --- customer_address ---------------------------------------------------------------------


@pytest.mark.parametrize("customer_id", ["c-004213", "c-000001", "C-1", "7", "a.b", "a_b-c.d", "x" * 64,
                                         "0-", "c_"])
def test_customer_address_accepts_normal_ids(customer_id: str):
    address = customer_address(customer_id, DOMAIN)
    assert address == f"{customer_id}@{DOMAIN}"
    # What it builds is what the transports accept: one address, unchanged, in the domain.
    msg = build_email(make_row(destination=address))
    assert msg["To"] == address and [a.addr_spec for a in msg["To"].addresses] == [address]


HOSTILE_IDS = {
    "comma": "evil@attacker.example, x",
    "comma-only": "a,b",
    "at": "evil@attacker.example",
    "space": "c 1",
    "double-quote": '"c-1"',
    "single-quote": "c'1",
    "angle": "<c-1>",
    "crlf": "c-1\r\nBcc: evil@attacker.example",
    "lf": "c-1\n",
    "cr": "c-1\r",
    "tab": "c-1\t",
    "nul": "c-1\x00",
    "65-chars": "c" * 65,
    "20000-quotes": '"' * 20_000,
    "empty": "",
    "non-ascii": "c-00421é",
    "fullwidth-digit": "c-１",
    "arabic-digit": "c-٤",
    "double-dot": "c..1",
    "trailing-dot": "c-1.",
    "leading-dot": ".c-1",
    "leading-hyphen": "-c1",
    "percent": "evil%attacker.example",
    "bang": "attacker.example!evil",
    "semicolon": "c;1",
    "colon": "g:evil",
    "parens": "c(1)",
    "brackets": "c[1]",
    "backslash": "c\\1",
    "plus": "c+1",
    "slash": "../c1",
}


@pytest.mark.parametrize("customer_id", list(HOSTILE_IDS.values()), ids=list(HOSTILE_IDS))
def test_customer_address_refuses_hostile_ids(customer_id: str):
    with pytest.raises(ValueError) as refused:
        customer_address(customer_id, DOMAIN)
    # The message goes to logs: it must not carry the id (line breaks, megabytes, an address).
    assert customer_id == "" or customer_id not in str(refused.value)
    assert CUSTOMER_ID_PATTERN.fullmatch(customer_id) is None


@pytest.mark.parametrize("customer_id", [None, 42, b"c-1"])
def test_customer_address_refuses_ids_that_are_not_text(customer_id: object):
    with pytest.raises(ValueError):
        customer_address(customer_id, DOMAIN)  # type: ignore[arg-type]


@pytest.mark.parametrize("domain", ["", "attacker.example, x", "attacker.example>", "a..example", "a.example.",
                                    "203.0.113.7", "[203.0.113.7]", "bänk.example", "x\r\n.example"])
def test_customer_address_refuses_a_domain_that_is_not_a_plain_dns_name(domain: str):
    with pytest.raises(ValueError):
        customer_address("c-000001", domain)


def test_customer_address_is_bounded_by_the_smtp_path_limit():
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # a legal 253-character DNS name
    with pytest.raises(ValueError):
        customer_address("c", domain)  # 255 characters: over RFC 5321's 254, undeliverable
    shorter = domain[:-1]
    assert customer_address("c", shorter) == f"c@{shorter}" and len(f"c@{shorter}") == MAX_ADDRESS_CHARS


def test_customer_id_pattern_is_compiled_and_strict():
    assert CUSTOMER_ID_PATTERN.fullmatch("c-004213")
    # A prefix match is not enough: the pattern is for fullmatch.
    assert CUSTOMER_ID_PATTERN.fullmatch("c-004213, evil@attacker.example") is None
