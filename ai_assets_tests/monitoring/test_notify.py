"""Alerts end to end against real receivers on loopback (aiosmtpd and an HTTP server) and a real
operations database: a person hears about a condition once, again when it gets worse or after
the cooldown, once when it clears; a dead receiver loses nothing; hostile text stays text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import EnvVar

from ai_assets.monitoring.alerts import Severity, asset_check_alert
from ai_assets.monitoring.notify import (
    LOGGER_NAME,
    AlertDispatcher,
    EmailChannel,
    Notifier,
    WebhookChannel,
    parse_recipients,
)
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.alerts import AlertStore
from ai_assets.resources.notifier import NotifierResource, notifier_from_env
from ai_assets_tests.doubles.receivers import SmtpReceiver, WebhookReceiver

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DAY = "2025-03-03"
TOKEN = "s3cr3tT0kenXYZ"  # the secret part of a Slack webhook URL
UI = "http://dagster.example:3000"
HOSTILE = ("nulls\r\nBcc: evil@attacker.example\r\nX-Injected: 1\r\n\r\n<!channel> <@U0123> @here "
           "<https://evil.example|click> & more")


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(path=f"/services/T000/B000/{TOKEN}") as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def db(tmp_path: Path) -> Iterator[OpsDb]:
    with OpsDb.open(f"sqlite:///{tmp_path / 'ops.db'}") as ops:
        yield ops


def dispatcher(db: OpsDb, hooks: WebhookReceiver, smtp: SmtpReceiver, **kwargs) -> AlertDispatcher:
    channels = [WebhookChannel(hooks.url, timeout_s=2),
                EmailChannel("127.0.0.1", smtp.port, "oncall@bank.example, ml@bank.example",
                             "ai-assets-alerts@bank.example", timeout_s=2)]
    return AlertDispatcher(AlertStore(db.sessions), Notifier(channels, ui_url=UI), **kwargs)


def check_alert(severity: str = "WARN", figure: float = 10, summary: str = "10 rows have an empty text"):
    return asset_check_alert("validated_messages", "no_empty_text", severity=severity, description=summary,
                             partition=DAY, now=NOW, figure=figure, threshold=0)


def test_once_then_worse_then_cooldown_then_resolved(db, hooks, smtp, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    d = dispatcher(db, hooks, smtp, cooldown=timedelta(hours=24))
    results = [d.raise_(check_alert(), NOW + timedelta(seconds=i)) for i in range(100)]
    assert [r.sent for r in results].count(True) == 1 and results[0].reason == "new"
    assert len(hooks.events) == 1 and len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert set(mail.to) == {"oncall@bank.example", "ml@bank.example"}
    assert mail.subject.startswith("[WARNING] asset_check validated_messages:no_empty_text 2025-03-03")
    assert f"{UI}/assets/validated_messages?partition=2025-03-03" in mail.body
    assert hooks.events[0].json["text"].startswith("[WARNING]")
    assert db_record(db).raised_count == 100

    # Worse: a higher severity is sent at once; so is a figure worse by the margin.
    assert d.raise_(check_alert("ERROR"), NOW + timedelta(minutes=5)).reason == "worse_severity"
    assert d.raise_(check_alert("ERROR", figure=14), NOW + timedelta(minutes=6)).sent is False  # +4 < 50%
    assert d.raise_(check_alert("ERROR", figure=16), NOW + timedelta(minutes=7)).reason == "worse_figure"
    assert len(hooks.events) == 3 and len(smtp.messages) == 3
    for i in range(20):
        d.raise_(check_alert("ERROR", figure=16), NOW + timedelta(minutes=8, seconds=i))
    assert len(hooks.events) == 3

    # After the cooldown, an unchanged condition is a reminder, once.
    later = NOW + timedelta(minutes=7, hours=24)
    assert d.raise_(check_alert("ERROR", figure=16), later).reason == "cooldown"
    assert not d.raise_(check_alert("ERROR", figure=16), later + timedelta(minutes=1)).sent
    assert len(hooks.events) == 4 and len(smtp.messages) == 4

    # Cleared: one resolved message; clearing again says nothing.
    cleared = d.resolve(*check_alert().key, now=later + timedelta(hours=1))
    assert cleared.sent and cleared.reason == "resolved"
    assert not d.resolve(*check_alert().key, now=later + timedelta(hours=2)).notified
    assert len(hooks.events) == 5 and len(smtp.messages) == 5
    assert hooks.events[-1].json["text"].startswith("[RESOLVED]") and smtp.messages[-1].subject.startswith("[RESOLVED]")
    assert hooks.duplicates() == {} and smtp.duplicates() == {}  # every notice its own key
    # Every notice was a log line too; the 100 repeats were not.
    notices = [r for r in caplog.records if r.name == LOGGER_NAME and r.getMessage().startswith("alert [")]
    assert len(notices) == 5
    assert db_record(db).status == "resolved"

    # It comes back: a new episode, told again.
    assert d.raise_(check_alert(), later + timedelta(hours=3)).reason == "reopened"
    assert len(hooks.events) == 6


def db_record(db: OpsDb):
    return AlertStore(db.sessions).get("asset_check", "validated_messages:no_empty_text", DAY)


def test_receiver_down_records_unsent_and_delivers_on_retry_once(db, hooks, smtp, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    d = dispatcher(db, hooks, smtp, retry_after_s=60)
    hooks.stop()
    smtp.stop()
    first = d.raise_(check_alert(), NOW)  # does not raise
    assert first.notified and not first.sent and {r.channel for r in first.results if not r.ok} == {"webhook", "email"}
    record = db_record(db)
    assert record.pending_kind == "firing" and set(record.pending_channels) == {"webhook", "email"}
    assert record.last_sent_at is None and record.attempts == 1 and "connection" in record.last_error.lower()
    assert any(r.getMessage().startswith("alert [WARNING]") for r in caplog.records)  # the log line, always
    # Before the retry time, raising again does not hammer the dead receiver.
    assert d.raise_(check_alert(), NOW + timedelta(seconds=10)).reason == "in_flight"
    assert d.retry_unsent(NOW + timedelta(seconds=10)) == []

    hooks.start()
    smtp.start()
    retried = d.retry_unsent(NOW + timedelta(seconds=61))
    assert [r.sent for r in retried] == [True]
    assert len(hooks.events) == 1 and len(smtp.messages) == 1
    assert hooks.keys() == [first.notice_key] and smtp.message_ids() == [f"<{first.notice_key}@ai-assets>"]
    assert d.retry_unsent(NOW + timedelta(hours=1)) == []
    assert not d.raise_(check_alert(), NOW + timedelta(minutes=5)).sent
    assert len(hooks.events) == 1 and len(smtp.messages) == 1
    record = db_record(db)
    assert record.pending_kind is None and record.last_sent_at == NOW + timedelta(seconds=61)


def test_one_channel_down_only_that_channel_is_retried(db, hooks, smtp):
    d = dispatcher(db, hooks, smtp, retry_after_s=30)
    hooks.fail_next(1, status=503)
    first = d.raise_(check_alert(), NOW)
    assert not first.sent and len(smtp.messages) == 1 and hooks.events == []
    assert db_record(db).pending_channels == ("webhook",) and db_record(db).last_sent_at == NOW
    # The next raise after the retry time delivers the webhook only (e-mail is not sent twice).
    again = d.raise_(check_alert(), NOW + timedelta(seconds=31))
    assert again.sent and again.reason == "unsent" and again.notice_key == first.notice_key
    assert len(hooks.events) == 1 and len(smtp.messages) == 1
    # Resolved while the firing notice never reached anybody: nothing to take back.
    hooks.stop()
    smtp.stop()
    other = asset_check_alert("outbox_deliveries", "no_dead_letters", severity="ERROR",
                              description="4 outbox messages are dead letters", partition=DAY, now=NOW, figure=4,
                              threshold=0)
    assert not d.raise_(other, NOW).sent
    assert d.resolve(*other.key, now=NOW + timedelta(minutes=1)).reason == "never_told"
    assert AlertStore(db.sessions).get(*other.key).pending_kind is None


def test_a_resolution_that_fails_is_retried(db, hooks, smtp):
    d = dispatcher(db, hooks, smtp, retry_after_s=5)
    d.raise_(check_alert(), NOW)
    hooks.fail_next(1, status=500)
    assert not d.resolve(*check_alert().key, now=NOW + timedelta(minutes=1)).sent
    assert [r.sent for r in d.retry_unsent(NOW + timedelta(minutes=2))] == [True]
    assert [e.json["text"].split()[0] for e in hooks.events] == ["[WARNING]", "[RESOLVED]"]
    assert len(smtp.messages) == 2


def test_hostile_summary_cannot_inject_headers_recipients_or_mentions(db, hooks, smtp):
    d = dispatcher(db, hooks, smtp)
    assert d.raise_(check_alert(summary=HOSTILE), NOW).sent
    mail = smtp.messages[0]
    assert set(smtp.rcpts) == {"oncall@bank.example", "ml@bank.example"}
    assert "Bcc" not in mail.headers and "X-Injected" not in mail.headers
    assert "\r" not in mail.subject and "\n" not in mail.subject and len(mail.subject) <= 200
    assert b"\r\nBcc:" not in mail.raw and b"\r\nX-Injected:" not in mail.raw
    raw_body = hooks.events[0].body.decode()
    for mention in ("<!channel>", "<@U0123>", "<https://evil.example"):
        assert mention not in raw_body
    assert "@here" not in hooks.events[0].json["text"]
    assert "&lt;!channel&gt;" in hooks.events[0].json["text"]


def test_secrets_are_never_logged_or_stored(db, hooks, smtp, caplog):
    caplog.set_level(logging.DEBUG)
    d = dispatcher(db, hooks, smtp, retry_after_s=1)
    hooks.stop()
    d.raise_(check_alert(), NOW)
    hooks.start()
    d.retry_unsent(NOW + timedelta(seconds=2))
    stored = json.dumps([r.as_dict() for r in AlertStore(db.sessions).list()])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (stored, logged, repr(d.notifier.channels)):
        assert TOKEN not in text and hooks.url not in text
    assert "oncall@bank.example" not in stored


def test_no_channels_is_a_log_line_and_a_row(db, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    d = AlertDispatcher(AlertStore(db.sessions), Notifier(ui_url=UI))
    assert d.raise_(check_alert(), NOW).sent
    assert not d.raise_(check_alert(), NOW + timedelta(minutes=1)).sent
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("alert [")] == ["WARNING"]
    assert db_record(db).last_sent_at == NOW


def test_an_unreachable_database_is_logged_not_raised(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    db = OpsDb.open(f"sqlite:///{tmp_path / 'ops.db'}")
    d = AlertDispatcher(AlertStore(db.sessions), Notifier(ui_url=UI))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alerts")  # the store fails on every call from now on
    result = d.raise_(check_alert(severity="ERROR"), NOW)
    assert result.error and not result.sent and d.retry_unsent(NOW) == []
    assert not d.resolve(*check_alert().key, now=NOW).sent
    assert any(r.getMessage().startswith("alert [ERROR]") for r in caplog.records)
    db.dispose()


def test_recipients_are_checked_at_start_up():
    assert parse_recipients("a@bank.example, b@bank.example,") == ("a@bank.example", "b@bank.example")
    for bad in ("a@bank.example\r\nBcc: x@evil.example", "Boss <a@bank.example>", "a b@bank.example", "",
                "nobody", "a@bank.example, (comment)x@evil.example"):
        with pytest.raises(ValueError):
            parse_recipients(bad)
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("file:///etc/passwd")


def test_notifier_resource_builds_channels_and_keeps_secrets_as_env_vars(monkeypatch, hooks, smtp, db):
    monkeypatch.setenv("AI_ASSETS_ALERT_WEBHOOK_URL", hooks.url)
    monkeypatch.setenv("AI_ASSETS_ALERT_EMAIL_TO", "oncall@bank.example")
    monkeypatch.setenv("AI_ASSETS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("AI_ASSETS_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("AI_ASSETS_ALERT_COOLDOWN_H", "6")
    monkeypatch.setenv("AI_ASSETS_UI_URL", UI + "/")
    in_dagster = notifier_from_env()
    assert isinstance(in_dagster.webhook_url, EnvVar) and in_dagster.cooldown_h == 6 and in_dagster.ui_url == UI
    outside = notifier_from_env(in_dagster=False)
    assert [c.name for c in outside.channels()] == ["webhook", "email"]
    d = outside.dispatcher(db)
    assert d.cooldown == timedelta(hours=6)
    assert d.raise_(check_alert(severity=Severity.CRITICAL.label), NOW).sent
    assert len(hooks.events) == 1 and len(smtp.messages) == 1
    assert NotifierResource().channels() == [] and NotifierResource(email_to="a@bank.example").channels() == []
