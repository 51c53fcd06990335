"""Transports against real receivers on loopback: what is sent, and how failures are classified."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ai_assets.actions.delivery import (
    DeliveryFailed,
    FileEventSink,
    FileMailSink,
    SmtpMailer,
    WebhookPoster,
    webhook_body,
)
from ai_assets.ops_db.outbox import OutboxRow
from ai_assets_tests.actions.delivery import T0, key_for
from ai_assets_tests.doubles import SmtpReceiver, WebhookReceiver

SMTP_PASSWORD = "smtp-pa55-Zq8wKx"
WEBHOOK_SECRET = "whsec-Hk29Lmq7Pz"


def make_row(kind: str = "email", n: int = 1, **changes) -> OutboxRow:
    base = dict(id=n, idempotency_key=key_for(f"{kind}-{n}"), action_id=1, message_id=f"msg-{n}",
                partition="2031-01-01", kind=kind, status="pending", attempts=0, next_attempt_at=T0,
                lease_until=None, last_error=None, created_at=T0, delivered_at=None)
    if kind == "email":
        base.update(destination=f"c-{n:06d}@customers.bank.example", subject=f"Your case #{n}",
                    payload={"body": f"Hello {n},\nwe opened a case for you."})
    else:
        base.update(destination="case.opened", subject=None, payload={"case_id": n, "queue": "cards", "note": "é"})
    return OutboxRow(**{**base, **changes})


# --- SMTP -----------------------------------------------------------------------------


def test_smtp_sends_the_row_with_its_stable_message_id(smtp: SmtpReceiver):
    row = make_row()
    SmtpMailer("127.0.0.1", smtp.port).send(row)
    SmtpMailer("127.0.0.1", smtp.port, sender="cards@bank.example").send(
        # The sender is configuration: an outbox payload cannot choose it.
        make_row(n=2, payload={"body": "Hi", "from": "Attacker <ceo@bank.example>"}))
    first, second = smtp.messages
    assert first.message_id == f"<{row.idempotency_key}@ai-assets>"
    assert first.headers["X-Idempotency-Key"] == row.idempotency_key
    assert (first.to, first.subject, first.body) == (("c-000001@customers.bank.example",), "Your case #1",
                                                      "Hello 1,\nwe opened a case for you.\n")
    assert (first.mail_from, first.headers["From"]) == ("support@bank.example", "support@bank.example")
    assert (second.mail_from, second.headers["From"]) == ("cards@bank.example", "cards@bank.example")
    assert smtp.duplicates() == {}


def test_smtp_resend_is_the_same_message(smtp: SmtpReceiver):
    """A re-send (after a crash before the result was recorded) is byte-for-byte the same
    message, so the receiver can drop it by Message-ID."""
    row = make_row()
    mailer = SmtpMailer("127.0.0.1", smtp.port)
    mailer.send(row)
    mailer.send(row)
    first, second = smtp.messages
    assert first.raw == second.raw
    assert smtp.duplicates() == {f"<{row.idempotency_key}@ai-assets>": 2}


def test_smtp_down_is_retryable_and_back_on_the_same_port(smtp: SmtpReceiver):
    mailer = SmtpMailer("127.0.0.1", smtp.port, timeout_s=5)
    port = smtp.port
    smtp.stop()
    with pytest.raises(DeliveryFailed) as failed:
        mailer.send(make_row())
    assert failed.value.retryable and "ConnectionRefused" in failed.value.reason
    smtp.start()
    assert smtp.port == port
    mailer.send(make_row())
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("reply, retryable", [("451 4.3.0 try again later", True),
                                              ("552 5.3.4 message too big", False)])
def test_smtp_refusals_are_classified_by_code(smtp: SmtpReceiver, reply: str, retryable: bool):
    smtp.reject_next(1, reply=reply)
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port).send(make_row())
    assert failed.value.retryable is retryable
    assert reply.split()[0] in failed.value.reason
    assert smtp.messages == [] and smtp.refused == 1


def test_smtp_authentication(tmp_path: Path):
    with SmtpReceiver(credentials={"outbox": SMTP_PASSWORD}) as smtp:
        SmtpMailer("127.0.0.1", smtp.port, username="outbox", password=SMTP_PASSWORD).send(make_row())
        assert len(smtp.messages) == 1
        with pytest.raises(DeliveryFailed) as no_login:
            SmtpMailer("127.0.0.1", smtp.port).send(make_row(n=2))
        wrong = SmtpMailer("127.0.0.1", smtp.port, username="outbox", password=SMTP_PASSWORD + "-old")
        with pytest.raises(DeliveryFailed) as bad_password:
            wrong.send(make_row(n=3))
    # Our configuration is wrong, not the message: retry (and alert) rather than lose it.
    assert no_login.value.retryable and bad_password.value.retryable
    assert "535" in bad_password.value.reason
    assert SMTP_PASSWORD not in bad_password.value.reason and SMTP_PASSWORD not in repr(wrong)
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("reply, retryable", [("450 4.2.1 mailbox busy", True), ("550 5.1.1 no such mailbox", False)])
def test_smtp_refused_recipients_are_classified_by_code(smtp: SmtpReceiver, reply: str, retryable: bool):
    smtp.refuse_recipient("c-000001@customers.bank.example", reply=reply)
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port).send(make_row())
    assert failed.value.retryable is retryable
    assert failed.value.reason == f"smtp recipient refused: {reply}"
    SmtpMailer("127.0.0.1", smtp.port).send(make_row(n=2))
    assert [m.to for m in smtp.messages] == [("c-000002@customers.bank.example",)]


def test_a_reply_quoting_the_address_keeps_it_out_of_the_failure_reason(smtp: SmtpReceiver):
    """Failure reasons go to the outbox, the audit log, logs and the UI: no customer address."""
    smtp.refuse_recipient("c-000001@customers.bank.example",
                          reply="550 5.1.1 <c-000001@customers.bank.example>: Recipient rejected")
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port).send(make_row())
    assert failed.value.reason == "smtp recipient refused: 550 5.1.1 <[address]>: Recipient rejected"


def test_smtp_starttls_is_required_when_configured(smtp: SmtpReceiver):
    """With starttls=True the mailer never falls back to plain text: a server without
    STARTTLS (this one) is an error, retried until the configuration or server is fixed."""
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port, starttls=True).send(make_row())
    assert failed.value.retryable and "STARTTLS" in failed.value.reason
    assert smtp.messages == []


@pytest.mark.parametrize("changes, why", [
    ({"subject": "Hello\nBcc: everyone@example.org"}, "header"),
    ({"payload": {"no_body": True}}, "body"),
    ({"idempotency_key": "../../etc/passwd"}, "key"),
])
def test_malformed_email_rows_are_permanent(smtp: SmtpReceiver, changes: dict, why: str):
    with pytest.raises(DeliveryFailed) as failed:
        SmtpMailer("127.0.0.1", smtp.port).send(make_row(**changes))
    assert not failed.value.retryable and why in failed.value.reason
    assert smtp.messages == []


# --- Webhook --------------------------------------------------------------------------


def test_webhook_posts_json_with_idempotency_key_and_verifiable_signature(hooks: WebhookReceiver):
    row = make_row("webhook")
    WebhookPoster(hooks.url, secret=WEBHOOK_SECRET).send(row)
    (event,) = hooks.events
    assert event.path == "/hooks"
    assert event.json == row.payload
    assert event.headers["idempotency-key"] == row.idempotency_key
    assert event.headers["x-event"] == "case.opened"
    assert event.headers["content-type"] == "application/json"
    expected = hmac.new(WEBHOOK_SECRET.encode(), event.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(event.headers["x-signature"], f"sha256={expected}")
    forged = hmac.new(b"another secret", event.body, hashlib.sha256).hexdigest()
    assert event.headers["x-signature"] != f"sha256={forged}"
    assert WEBHOOK_SECRET not in repr(WebhookPoster(hooks.url, secret=WEBHOOK_SECRET))


def test_webhook_without_secret_is_unsigned_and_resend_is_identical(hooks: WebhookReceiver):
    row = make_row("webhook")
    poster = WebhookPoster(hooks.url)
    poster.send(row)
    poster.send(row)
    first, second = hooks.events
    assert "x-signature" not in first.headers
    assert first.body == second.body == webhook_body(row)
    assert hooks.duplicates() == {row.idempotency_key: 2}


@pytest.mark.parametrize("status, retryable", [(400, False), (401, False), (404, False), (409, False), (422, False),
                                               (408, True), (429, True), (500, True), (502, True), (503, True)])
def test_webhook_status_classification(hooks: WebhookReceiver, status: int, retryable: bool):
    hooks.fail_next(1, status=status, body="nope")
    with pytest.raises(DeliveryFailed) as failed:
        WebhookPoster(hooks.url).send(make_row("webhook"))
    assert failed.value.retryable is retryable
    assert failed.value.reason == f"http {status}: nope"
    assert hooks.events == [] and [r.status for r in hooks.requests] == [status]


def test_webhook_retry_after_is_passed_on(hooks: WebhookReceiver):
    hooks.fail_next(1, status=429, headers={"Retry-After": "120"})
    with pytest.raises(DeliveryFailed) as failed:
        WebhookPoster(hooks.url).send(make_row("webhook"))
    assert failed.value.retryable and failed.value.retry_after_s == 120.0


def test_webhook_redirect_is_not_followed():
    """urllib would re-issue a redirected POST as a GET without the body: report it instead."""
    seen: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.command)
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        with pytest.raises(DeliveryFailed) as failed:
            WebhookPoster(f"http://127.0.0.1:{server.server_address[1]}/hooks").send(make_row("webhook"))
    finally:
        server.shutdown()
        server.server_close()
    assert not failed.value.retryable and failed.value.reason.startswith("http 302")
    assert seen == ["POST"]


def test_webhook_connection_refused_and_timeout_are_retryable(hooks: WebhookReceiver):
    hooks.stall_next(1)
    with pytest.raises(DeliveryFailed) as timed_out:
        WebhookPoster(hooks.url, timeout_s=0.2).send(make_row("webhook"))
    hooks.release()
    url = hooks.url
    hooks.stop()
    with pytest.raises(DeliveryFailed) as refused:
        WebhookPoster(url).send(make_row("webhook"))
    assert timed_out.value.retryable and "timed out" in timed_out.value.reason
    assert refused.value.retryable and "refused" in refused.value.reason.lower()


def test_webhook_failure_reasons_never_carry_the_secret(hooks: WebhookReceiver):
    hooks.fail_next(1, status=401, body=f"bad signature, expected one made with {WEBHOOK_SECRET}")
    with pytest.raises(DeliveryFailed) as failed:
        WebhookPoster(hooks.url, secret=WEBHOOK_SECRET).send(make_row("webhook"))
    assert WEBHOOK_SECRET not in failed.value.reason
    assert failed.value.reason == "http 401: bad signature, expected one made with ***"


def test_webhook_invalid_event_name_is_permanent(hooks: WebhookReceiver):
    with pytest.raises(DeliveryFailed) as failed:
        WebhookPoster(hooks.url).send(make_row("webhook", destination="case.opened\r\nX-Admin: yes"))
    assert not failed.value.retryable and hooks.requests == []


# --- File sinks (the demo's receivers) -------------------------------------------------


def test_file_mail_sink_writes_one_eml_per_key_and_overwrites_on_resend(tmp_path: Path):
    sink = FileMailSink(tmp_path / "mail")
    row = make_row()
    sink.send(row)
    path = tmp_path / "mail" / f"{row.idempotency_key}.eml"
    first = path.read_bytes()
    sink.send(dataclasses.replace(row, attempts=1))
    sink.send(make_row(n=2))
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == sorted(
        [f"{row.idempotency_key}.eml", f"{key_for('email-2')}.eml"])  # no temporary files left
    assert path.read_bytes() == first
    msg = email.message_from_bytes(first, policy=email.policy.default)
    assert msg["Message-ID"] == f"<{row.idempotency_key}@ai-assets>"
    assert msg["To"] == "c-000001@customers.bank.example"
    assert msg.get_content() == "Hello 1,\nwe opened a case for you.\n"


def test_file_event_sink_writes_one_json_per_key_and_overwrites_on_resend(tmp_path: Path):
    sink = FileEventSink(tmp_path / "events")
    row = make_row("webhook")
    path = tmp_path / "events" / f"{row.idempotency_key}.json"
    path.parent.mkdir()
    path.write_text("stale")
    sink.send(row)
    sink.send(row)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert json.loads(path.read_text()) == {"idempotency_key": row.idempotency_key, "event": "case.opened",
                                            "payload": row.payload}


def test_file_sink_failure_is_retryable_and_leaves_no_partial_file(tmp_path: Path):
    sink = FileEventSink(tmp_path)
    row = make_row("webhook")
    (tmp_path / f"{row.idempotency_key}.json").mkdir()  # the rename cannot replace a directory
    with pytest.raises(DeliveryFailed) as failed:
        sink.send(row)
    assert failed.value.retryable
    assert [p.name for p in tmp_path.iterdir()] == [f"{row.idempotency_key}.json"]


def test_file_sinks_refuse_keys_that_are_not_file_names(tmp_path: Path):
    for sink, kind in ((FileMailSink(tmp_path / "out"), "email"), (FileEventSink(tmp_path / "out"), "webhook")):
        with pytest.raises(DeliveryFailed) as failed:
            sink.send(make_row(kind, idempotency_key="../escaped"))
        assert not failed.value.retryable
    assert sorted(p.name for p in tmp_path.iterdir()) == []
