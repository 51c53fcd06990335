"""Transports: how one outbox row leaves the building. Standard library only.

Each has one method, `send(row)`, that returns when the receiver accepted the row and
raises `DeliveryFailed(reason, retryable)` otherwise. Every send carries the row's
idempotency key (Message-ID / Idempotency-Key / file name), so a second send of the
same row, after a crash between sending and recording, is recognisably the same message.

Failure reasons are stored in the database and logged, so they never contain a secret:
transports build them from status codes and server replies (with their own secrets
replaced by `***`), never from URLs, credentials or message bodies.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import hmac
import http.client
import json
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from ai_assets.files import write_atomically
from ai_assets.ingestion.identifiers import ID_PATTERN
from ai_assets.ops_db.outbox import OutboxRow
from ai_assets.serving.resilience.retry_policy import parse_retry_after

DEFAULT_SENDER = "support@bank.example"
# Where customer e-mail goes until the CRM's contact lookup exists; actions/ledger.py and
# ActionSettings use the same default, so a transport built without one accepts their rows.
DEFAULT_RECIPIENT_DOMAIN = "customers.bank.example"
# The contract's id pattern (ingestion/identifiers.py): validation refuses other ids; this is the second wall.
CUSTOMER_ID_PATTERN = ID_PATTERN
# A host name: dot-separated LDH labels of 1-63 characters, no leading/trailing hyphen, and a
# last label with a letter (so an IP address or a domain literal is not a "domain" here).
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)*(?=[A-Za-z0-9-]*[A-Za-z]){_DNS_LABEL}")
_MAX_DNS_NAME = 253
# RFC 5321's limit on a forward path; it also bounds the e-mail package's header parser, which
# is quadratic (or recursive, to RecursionError) on long runs of quotes, comments or brackets.
MAX_ADDRESS_CHARS = 254
# RFC 5322's line limit: a longer Subject cannot be sent unfolded and is not a real subject.
MAX_SUBJECT_CHARS = 998
# What a destination may contain before it is parsed at all: printable ASCII, no space. This
# rules out CR/LF (header injection), other controls and anything needing SMTPUTF8.
_ADDRESS_CHARS = re.compile(r"[!-~]+")
# A local part the transports accept: an unquoted dot-atom of at most 64 characters, without
# "%" and "!" (the percent hack and bang paths, which some relays still turn into a different
# recipient). Quoted local parts are refused: no address of ours needs one.
_LOCAL_ATEXT = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"(?=.{{1,64}}\Z){_LOCAL_ATEXT}(?:\.{_LOCAL_ATEXT})*")
MESSAGE_ID_DOMAIN = "ai-assets"
# What a key may look like: safe as a file name, a header value and a Message-ID local part.
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_REPLY_CHARS = 200
# Headers unfolded up to SMTP's line limit: a folded Message-ID (ours is 78 characters) comes
# back with leading whitespace from some parsers, and it must compare equal everywhere.
_EMAIL_POLICY = email.policy.default.clone(max_line_length=998)


class DeliveryFailed(Exception):
    """A send that did not go through. `retryable` False means trying again cannot help
    (the receiver rejected this message): the row goes dead at once. `retry_after_s` is the
    receiver's own wait request (a floor for the next attempt), if it gave one."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Transport(Protocol):
    def send(self, row: OutboxRow) -> None: ...


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def message_id_for(idempotency_key: str) -> str:
    return f"<{idempotency_key}@{MESSAGE_ID_DOMAIN}>"


def sign_body(secret: str, body: bytes) -> str:
    """The `X-Signature` value of a webhook body: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(row: OutboxRow) -> bytes:
    """The bytes POSTed (and signed): the event document as canonical JSON, the same on every send."""
    return json.dumps(row.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def is_dns_name(domain: str) -> bool:
    """True for a plain host name such as `customers.bank.example` (no trailing dot, no IP)."""
    return isinstance(domain, str) and len(domain) <= _MAX_DNS_NAME and _DNS_NAME.fullmatch(domain) is not None


def _checked_domain(domain: str) -> str:
    if not is_dns_name(domain):
        raise ValueError("recipient domain must be a plain DNS name such as customers.bank.example")
    return domain


def customer_address(customer_id: str, domain: str) -> str:
    """The e-mail address of a customer, `<customer_id>@<domain>`.

    Raises ValueError unless `customer_id` fully matches CUSTOMER_ID_PATTERN and `domain` is a
    plain DNS name: the address is built from a customer-supplied id, and string formatting
    let `evil@attacker.example, x` add a foreign recipient. The messages never echo the id (it
    may be huge or hold line breaks, and it ends up in logs)."""
    if not isinstance(customer_id, str) or CUSTOMER_ID_PATTERN.fullmatch(customer_id) is None:
        raise ValueError("customer id is not a safe e-mail local part (expected e.g. c-004213)")
    _checked_domain(domain)
    # Address quotes or rejects anything unusual itself; after the checks above it does neither,
    # and serialises to exactly the addr-spec the transports accept.
    address = Address(username=customer_id, domain=domain).addr_spec
    if len(address) > MAX_ADDRESS_CHARS:
        raise ValueError(f"customer address is longer than {MAX_ADDRESS_CHARS} characters")
    return address


def _recipient(destination: object, recipient_domain: str) -> Address:
    """The one recipient of an e-mail row, or DeliveryFailed (permanent: the row will not get
    better). Defence in depth behind `customer_address`: whatever wrote the row, a message goes
    to exactly one mailbox in our recipient domain. Reasons never contain the destination."""
    if not isinstance(destination, str) or not destination:
        raise DeliveryFailed("e-mail destination is missing", retryable=False)
    # Bound the input before any parser sees it (the e-mail package is quadratic on some inputs).
    if len(destination) > MAX_ADDRESS_CHARS:
        raise DeliveryFailed(f"e-mail destination is longer than {MAX_ADDRESS_CHARS} characters", retryable=False)
    if _ADDRESS_CHARS.fullmatch(destination) is None:
        raise DeliveryFailed("e-mail destination has spaces, control or non-ASCII characters", retryable=False)
    # Two independent parsers must agree that this is one bare addr-spec and nothing else: no
    # list, no display name, no comment, no group, nothing dropped or rewritten in parsing.
    try:
        parsed = email.utils.getaddresses([destination])
        address = Address(addr_spec=destination)
    except Exception:  # ValueError, HeaderParseError, InvalidHeaderDefect, RecursionError...
        raise DeliveryFailed("e-mail destination is not a single address", retryable=False) from None
    if parsed != [("", destination)] or address.addr_spec != destination:
        raise DeliveryFailed("e-mail destination is not a single address", retryable=False)
    if _LOCAL_PART.fullmatch(address.username) is None:
        raise DeliveryFailed("e-mail destination has an unsupported local part", retryable=False)
    if address.domain.lower() != recipient_domain.lower():
        raise DeliveryFailed("e-mail destination is outside the recipient domain", retryable=False)
    return address


def _checked_key(row: OutboxRow) -> str:
    if not isinstance(row.idempotency_key, str) or not _SAFE_KEY.fullmatch(row.idempotency_key):
        raise DeliveryFailed("idempotency key is not a safe token", retryable=False)
    return row.idempotency_key


def _build(row: OutboxRow, sender: str, recipient_domain: str) -> tuple[EmailMessage, Address]:
    if not is_dns_name(recipient_domain):
        # Our configuration, not the row's fault (the transports check it at construction).
        raise DeliveryFailed("recipient domain is not a plain DNS name", retryable=True)
    key = _checked_key(row)
    recipient = _recipient(row.destination, recipient_domain)
    subject = row.subject or ""
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT_CHARS:
        raise DeliveryFailed(f"e-mail subject is not text of at most {MAX_SUBJECT_CHARS} characters",
                             retryable=False)
    body = row.payload.get("body") if isinstance(row.payload, dict) else None
    if not isinstance(body, str):
        raise DeliveryFailed("e-mail payload has no text body", retryable=False)
    msg = EmailMessage(policy=_EMAIL_POLICY)
    try:
        msg["From"] = sender
        # The parsed Address, not the row's string: the header says what the envelope says.
        msg["To"] = recipient
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(row.created_at)
        msg["Message-ID"] = message_id_for(key)
        msg["X-Idempotency-Key"] = key
        msg.set_content(body)
    except Exception as exc:  # CR/LF in a header value, unencodable text; never the caller's problem
        raise DeliveryFailed(f"invalid e-mail header or body: {type(exc).__name__}", retryable=False) from exc
    return msg, recipient


def build_email(row: OutboxRow, sender: str = DEFAULT_SENDER,
                recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN) -> EmailMessage:
    """The e-mail of an outbox row. Deterministic (Date is the row's creation time), so a
    re-send is byte-for-byte the same message. Raises nothing but DeliveryFailed: permanent
    for a row that cannot be sent (not exactly one address in `recipient_domain`, an
    over-long destination or subject, a bad key, header or body)."""
    return _build(row, sender, recipient_domain)[0]


_ADDRESS = re.compile(r"[^\s<>@,;:\"']+@[^\s<>@,;:\"']+")


def _reply(raw: bytes | str) -> str:
    """A server's reply, one line, bounded, with any e-mail address in it replaced: servers quote
    the recipient ("550 <c-42@…> rejected") and errors end up in the audit log and the UI."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return _ADDRESS.sub("[address]", " ".join(text.split()))[:_REPLY_CHARS]


class SmtpMailer:
    """Sends e-mail rows through an SMTP server (one connection per row).

    Permanent (dead at once): the server refused the recipient or the message with a 5xx.
    Everything else is retried: 4xx replies, refused or dropped connections, timeouts, TLS
    and authentication errors (those are our configuration, not the message's fault; the
    row waits for the fix instead of dying)."""

    def __init__(self, host: str, port: int, username: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout_s: float = 10, sender: str = DEFAULT_SENDER,
                 recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN):
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.sender = sender
        # Checked now: a bad setting should fail at start-up, not as a dead row per message.
        self.recipient_domain = _checked_domain(recipient_domain)

    def __repr__(self) -> str:
        return f"SmtpMailer(host={self.host!r}, port={self.port}, username={self.username!r}, starttls={self.starttls})"

    def _failed(self, reason: str, retryable: bool) -> DeliveryFailed:
        return DeliveryFailed(redact(reason, (self._password,)), retryable)

    def send(self, row: OutboxRow) -> None:
        msg, recipient = _build(row, self.sender, self.recipient_domain)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(msg, from_addr=self.sender, to_addrs=[recipient.addr_spec])
        except smtplib.SMTPRecipientsRefused as exc:
            replies = list(exc.recipients.values())
            permanent = all(500 <= code < 600 for code, _ in replies)
            detail = "; ".join(f"{code} {_reply(text)}" for code, text in replies)
            raise self._failed(f"smtp recipient refused: {detail}", retryable=not permanent) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise self._failed(f"smtp authentication failed: {exc.smtp_code} {_reply(exc.smtp_error)}",
                               retryable=True) from None
        except smtplib.SMTPDataError as exc:
            raise self._failed(f"smtp message refused: {exc.smtp_code} {_reply(exc.smtp_error)}",
                               retryable=not 500 <= exc.smtp_code < 600) from None
        except smtplib.SMTPResponseException as exc:
            raise self._failed(f"smtp {type(exc).__name__}: {exc.smtp_code} {_reply(exc.smtp_error)}",
                               retryable=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused connections, timeouts, TLS
            raise self._failed(f"smtp {type(exc).__name__}: {_reply(str(exc))}", retryable=True) from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a body-less GET: a redirect is reported instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookPoster:
    """POSTs webhook rows to one URL: the event document as JSON, with `Idempotency-Key`,
    `X-Event` (the row's destination) and, with a secret, `X-Signature: sha256=<HMAC>`.

    2xx is delivered. 408, 429, 5xx, connection errors and timeouts are retried (a
    `Retry-After` is honoured as a floor); any other status (4xx, a redirect) is
    permanent: the receiver will refuse the same request again."""

    def __init__(self, url: str, secret: str | None = None, timeout_s: float = 10):
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:
        return f"WebhookPoster(signed={self._secret is not None}, timeout_s={self.timeout_s})"

    def _failed(self, reason: str, retryable: bool, retry_after_s: float | None = None) -> DeliveryFailed:
        return DeliveryFailed(redact(reason, (self._secret,)), retryable, retry_after_s)

    def send(self, row: OutboxRow) -> None:
        key = _checked_key(row)
        body = webhook_body(row)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, "X-Event": row.destination,
                   "User-Agent": "ai-assets-outbox/1"}
        if self._secret:
            headers["X-Signature"] = sign_body(self._secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                status = exc.code
                try:
                    text = _reply(exc.read(4096))
                except (OSError, http.client.HTTPException):
                    text = ""
                retryable = status in (408, 429) or status >= 500
                retry_after = parse_retry_after(exc.headers.get("Retry-After")) if retryable else None
                raise self._failed(f"http {status}: {text}".rstrip(": "), retryable, retry_after) from None
        except urllib.error.URLError as exc:
            raise self._failed(f"webhook connection error: {_reply(str(exc.reason))}", retryable=True) from None
        except ValueError as exc:  # an event name that is not a valid header value
            raise self._failed(f"invalid webhook request: {type(exc).__name__}", retryable=False) from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, broken replies
            raise self._failed(f"webhook {type(exc).__name__}: {_reply(str(exc))}", retryable=True) from None


class FileMailSink:
    """Writes each e-mail row to `<directory>/<idempotency_key>.eml` (the demo's mail server):
    a re-send overwrites the same file with the same bytes. Refuses the rows an SmtpMailer
    would refuse (not one address in `recipient_domain`), so the demo shows the real rules."""

    def __init__(self, directory: str | os.PathLike[str], sender: str = DEFAULT_SENDER,
                 recipient_domain: str = DEFAULT_RECIPIENT_DOMAIN):
        self.directory = Path(directory)
        self.sender = sender
        self.recipient_domain = _checked_domain(recipient_domain)

    def path_for(self, idempotency_key: str) -> Path:
        return self.directory / f"{idempotency_key}.eml"

    def send(self, row: OutboxRow) -> None:
        data = build_email(row, self.sender, self.recipient_domain).as_bytes()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path_for(row.idempotency_key), data, mode=0o600)
        except OSError as exc:
            raise DeliveryFailed(f"mail sink {type(exc).__name__}: {exc.strerror or exc}", retryable=True) from None


class FileEventSink:
    """Writes each webhook row to `<directory>/<idempotency_key>.json` (the demo's event
    receiver): `{"idempotency_key", "event", "payload"}`; a re-send overwrites the same file."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path_for(self, idempotency_key: str) -> Path:
        return self.directory / f"{idempotency_key}.json"

    def send(self, row: OutboxRow) -> None:
        key = _checked_key(row)
        document = {"idempotency_key": key, "event": row.destination, "payload": row.payload}
        data = (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path_for(key), data, mode=0o600)
        except OSError as exc:
            raise DeliveryFailed(f"event sink {type(exc).__name__}: {exc.strerror or exc}", retryable=True) from None


__all__ = ["CUSTOMER_ID_PATTERN", "DEFAULT_RECIPIENT_DOMAIN", "DEFAULT_SENDER", "MAX_ADDRESS_CHARS",
           "MAX_SUBJECT_CHARS", "DeliveryFailed", "FileEventSink", "FileMailSink", "SmtpMailer", "Transport",
           "WebhookPoster", "build_email", "customer_address", "is_dns_name", "message_id_for", "redact",
           "sign_body", "webhook_body"]
