"""Delivering alerts: the channels, the notifier, and the dispatcher the sensors call.

    dispatcher = AlertDispatcher(AlertStore(db.sessions), Notifier([WebhookChannel(url)], ui_url=...))
    dispatcher.raise_(asset_check_alert(...))   # one notice per condition and window, however often raised
    dispatcher.resolve(*alert.key)              # one "resolved" notice, if anybody was told it fired
    dispatcher.retry_unsent()                   # notices a channel refused earlier (each sensor tick)

Every notice is a log line first (always written, whatever the channels do), then a
Slack-compatible JSON POST and/or an e-mail when configured. Channels never raise: a failure
is a `ChannelResult` with a redacted reason, the store keeps the notice owed to that channel
and a later call delivers it, so a sensor never crashes on a dead receiver and no alert is lost.
Reasons never contain the webhook URL (a secret: Slack's carries its token), the SMTP password
or an e-mail address.

Standard library only for the network (urllib, smtplib), like ai_assets/actions/delivery/transports.py.
"""

from __future__ import annotations

import email.policy
import email.utils
import json
import logging
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from ai_assets.monitoring.alerts import (
    DEFAULT_COOLDOWN,
    DEFAULT_MARGIN,
    Alert,
    AlertState,
    AlertStatus,
    Notice,
    NoticeKind,
    Severity,
    clean_text,
    decide,
    decide_resolved,
    email_message,
    log_line,
    slack_body,
)
from ai_assets.ops_db.alerts import DEFAULT_RETRY_AFTER_S, AlertDecision, AlertFacts, AlertRecord, AlertStore
from ai_assets.ops_db.types import utcnow

LOGGER_NAME = "ai_assets.alerts"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_UI_URL = "http://127.0.0.1:3000"
MAX_REASON_CHARS = 300
MAX_ADDRESS_CHARS = 254
_ADDRESS_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space: no CR/LF, nothing needing SMTPUTF8
_AN_ADDRESS = re.compile(r"[^\s<>@,;:\"']+@[^\s<>@,;:\"']+")
_EMAIL_POLICY = email.policy.default.clone(max_line_length=998)
_LEVELS = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.ERROR: "error",
           Severity.CRITICAL: "critical"}


class AlertLogger(Protocol):
    """A `logging.Logger`, or Dagster's `context.log`: anything with these methods."""

    def debug(self, msg: str, *args: Any) -> Any: ...
    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...
    def error(self, msg: str, *args: Any) -> Any: ...
    def critical(self, msg: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    ok: bool
    error: str | None = None  # redacted, one line
    latency_ms: int = 0


class ChannelError(Exception):
    """A send that did not go through; `reason` is safe to log and store."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Channel(Protocol):
    name: str

    def send(self, notice: Notice, ui_url: str) -> str | None:
        """Return when the receiver accepted the notice (with a warning to log, or None); raise
        ChannelError when it did not."""


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _reason(text: str, secrets: Iterable[str | None] = ()) -> str:
    """One bounded line with the given secrets and any e-mail address replaced."""
    return clean_text(_AN_ADDRESS.sub("[address]", _redact(str(text), secrets)), MAX_REASON_CHARS)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirected POST would become a body-less GET, possibly to another host: reported instead.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookChannel:
    """POSTs `slack_body(notice)` as JSON to one URL (a Slack incoming webhook, or anything that
    takes `{"text": ...}`), with the notice's key as `Idempotency-Key`. 2xx is delivered; any
    other answer, a refused connection or a timeout is a failure, retried later by the store."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("the alert webhook URL must be an http(s) URL")  # the URL itself is not echoed
        self._url = url
        self._secrets = tuple(p for p in (url, parsed.path, parsed.query, parsed.password) if p and len(p) > 1)
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_NoRedirects())

    def __repr__(self) -> str:  # never the URL: it is a secret
        return f"WebhookChannel(timeout_s={self.timeout_s})"

    def send(self, notice: Notice, ui_url: str) -> str | None:
        body = json.dumps(slack_body(notice, ui_url), ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": notice.key,
                   "User-Agent": "ai-assets-alerts/1"}
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(4096)
        except urllib.error.HTTPError as exc:
            with exc:
                raise ChannelError(f"webhook answered http {exc.code}") from None
        except urllib.error.URLError as exc:
            raise ChannelError(_reason(f"webhook connection error: {exc.reason}", self._secrets)) from None
        except Exception as exc:  # timeouts, resets, broken replies, a bad header: never the caller's problem
            raise ChannelError(_reason(f"webhook {type(exc).__name__}: {exc}", self._secrets)) from None
        return None


def parse_recipients(value: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated addresses -> a tuple of bare addr-specs. Refuses (ValueError) anything with
    spaces, controls or non-ASCII, display names, groups or an over-long address: a setting, so a
    mistake fails at start-up, not as an undeliverable alert."""
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    out = []
    for item in items:
        if not item:
            continue
        if len(item) > MAX_ADDRESS_CHARS or _ADDRESS_CHARS.fullmatch(item) is None:
            raise ValueError("an alert e-mail address has spaces, control or non-ASCII characters, or is too long")
        try:
            address = Address(addr_spec=item)
        except Exception:  # HeaderParseError, ValueError, ...
            raise ValueError("an alert e-mail address is not a single address") from None
        if address.addr_spec != item or not address.username or not address.domain:
            raise ValueError("an alert e-mail address is not a single address")
        out.append(item)
    if not out:
        raise ValueError("no alert e-mail recipient")
    return tuple(dict.fromkeys(out))


class EmailChannel:
    """Sends `email_message(notice)` over SMTP (one connection per notice) to the configured
    recipients, with `Message-ID: <key@ai-assets>` so a retried send is the same message."""

    name = "email"

    def __init__(self, host: str, port: int, recipients: str | Sequence[str], sender: str,
                 username: str | None = None, password: str | None = None, starttls: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        self.host, self.port = host, port
        self.recipients = parse_recipients(recipients)
        self.sender = parse_recipients(sender)[0]
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return (f"EmailChannel(host={self.host!r}, port={self.port}, recipients={len(self.recipients)}, "
                f"starttls={self.starttls})")

    def build(self, notice: Notice, ui_url: str) -> EmailMessage:
        subject, body = email_message(notice, ui_url)
        msg = EmailMessage(policy=_EMAIL_POLICY)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = subject
        msg["Date"] = email.utils.format_datetime(notice.at)
        msg["Message-ID"] = f"<{notice.key}@ai-assets>"
        msg["X-Idempotency-Key"] = notice.key
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to alerts
        msg.set_content(body)
        return msg

    def send(self, notice: Notice, ui_url: str) -> str | None:
        try:
            msg = self.build(notice, ui_url)
        except Exception as exc:  # an unencodable header: the renderers should make this impossible
            raise ChannelError(f"invalid alert e-mail: {type(exc).__name__}") from None
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise ChannelError(_reason(f"smtp {type(exc).__name__}: {exc.smtp_code} {reply}",
                                       (self._password,))) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise ChannelError(f"smtp refused every recipient: {codes}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(_reason(f"smtp {type(exc).__name__}: {exc}", (self._password,))) from None
        if refused:
            # Some recipients took it: a retry would send them a duplicate. A warning in the log instead.
            return f"smtp refused {len(refused)} of {len(self.recipients)} recipients"
        return None


@dataclass(frozen=True)
class NotifyResult:
    notice: Notice
    results: tuple[ChannelResult, ...]

    @property
    def delivered(self) -> tuple[str, ...]:
        return tuple(r.channel for r in self.results if r.ok)

    @property
    def failed(self) -> dict[str, str]:
        return {r.channel: r.error or "failed" for r in self.results if not r.ok}

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class Notifier:
    """The log line (always) and the configured channels. `notify` never raises for a channel."""

    def __init__(self, channels: Sequence[Channel] = (), *, ui_url: str = DEFAULT_UI_URL,
                 logger: AlertLogger | None = None):
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")
        self.channels = {c.name: c for c in channels}
        self.ui_url = ui_url.rstrip("/")
        self.logger: AlertLogger = logger or logging.getLogger(LOGGER_NAME)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(self.channels)

    def log(self, notice: Notice) -> None:
        level = "info" if notice.resolved else _LEVELS[notice.alert.severity]
        getattr(self.logger, level)("alert %s", log_line(notice, self.ui_url))

    def notify(self, notice: Notice, channels: Collection[str] | None = None) -> NotifyResult:
        """Log `notice`, then send it to `channels` (default: all; unknown names are skipped: a
        channel removed from the configuration no longer owes anything)."""
        self.log(notice)
        wanted = self.channel_names if channels is None else [c for c in channels if c in self.channels]
        results = []
        for name in wanted:
            started = time.monotonic()
            try:
                warning = self.channels[name].send(notice, self.ui_url)
                result = ChannelResult(name, True, None, int((time.monotonic() - started) * 1000))
                if warning:
                    self.logger.warning("alert %s delivered to %s with a warning: %s", notice.key, name, warning)
            except ChannelError as exc:
                result = ChannelResult(name, False, exc.reason, int((time.monotonic() - started) * 1000))
            except Exception as exc:  # a bug in a channel must not crash the sensor either
                result = ChannelResult(name, False, f"{name} {type(exc).__name__}",
                                       int((time.monotonic() - started) * 1000))
            if not result.ok:
                self.logger.warning("alert %s not delivered to %s (kept, retried later): %s",
                                    notice.key, name, result.error)
            results.append(result)
        return NotifyResult(notice, tuple(results))


# --- the dispatcher: store + rules + notifier ---------------------------------------------------


def facts_of(alert: Alert) -> AlertFacts:
    return AlertFacts(alert.source, alert.condition, alert.window, alert.severity.label, alert.summary, alert.figure,
                      alert.threshold, alert.higher_is_worse, alert.partition, alert.link)


def alert_of(record: AlertRecord) -> Alert:
    return Alert(record.source, record.condition, record.window, Severity.parse(record.severity), record.summary,
                 record.figure, record.threshold, record.higher_is_worse, record.partition, record.link)


def state_of(record: AlertRecord) -> AlertState:
    return AlertState(status=AlertStatus(record.status), severity=Severity.parse(record.severity),
                      figure=record.figure,
                      sent_severity=Severity.parse(record.sent_severity) if record.sent_severity else None,
                      sent_figure=record.sent_figure, last_sent_at=record.last_sent_at,
                      pending=NoticeKind(record.pending_kind) if record.pending_kind else None,
                      retry_at=record.retry_at)


@dataclass(frozen=True)
class DispatchResult:
    """What one raise, resolve or retry did. `sent`: a notice went to every channel that owed it
    (with no channel configured, the log line is the delivery). `notified`: a notice was due."""

    notified: bool
    sent: bool
    reason: str
    notice_key: str | None = None
    results: tuple[ChannelResult, ...] = ()
    record: AlertRecord | None = None
    error: str | None = None  # the store could not be reached (the log line was still written)


class AlertDispatcher:
    """The one entry the sensors call. Never raises for a delivery failure or an unreachable
    operations database: the first leaves the notice owed (retried by `retry_unsent` or the next
    raise once `retry_after_s` has passed), the second is logged (and nothing is sent: without the
    store there is no de-duplication, and a hundred ticks must not become a hundred messages)."""

    def __init__(self, store: AlertStore, notifier: Notifier, *, cooldown: timedelta = DEFAULT_COOLDOWN,
                 margin: float = DEFAULT_MARGIN, retry_after_s: float = DEFAULT_RETRY_AFTER_S,
                 clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.notifier = notifier
        self.cooldown = cooldown
        self.margin = margin
        self.retry_after_s = retry_after_s
        self.clock = clock

    def raise_(self, alert: Alert, now: datetime | None = None) -> DispatchResult:
        """The condition holds now: record it, and notify if the rules say so."""
        now = now or self.clock()

        def rule(record: AlertRecord | None) -> tuple[bool, str]:
            verdict = decide(state_of(record) if record else None, alert, now, self.cooldown, self.margin)
            return verdict.send, verdict.reason

        try:
            decision = self.store.raise_alert(facts_of(alert), now, rule, self.notifier.channel_names)
        except SQLAlchemyError as exc:
            return self._unrecorded(Notice(NoticeKind.FIRING, alert, "unrecorded", "unrecorded", now), exc)
        if not decision.send:
            self.notifier.logger.debug("alert %s/%s/%s suppressed (%s)", *alert.key, decision.reason)
            return DispatchResult(False, False, decision.reason, record=decision.record)
        return self._deliver(decision, alert, now)

    def resolve(self, source: str, condition: str, window: str, now: datetime | None = None) -> DispatchResult:
        """The condition no longer holds: resolve it, and tell whoever was told it fired."""
        now = now or self.clock()

        def rule(record: AlertRecord | None) -> tuple[bool, str]:
            verdict = decide_resolved(state_of(record) if record else None)
            return verdict.send, verdict.reason

        try:
            decision = self.store.clear(source, condition, window, now, rule, self.notifier.channel_names)
        except SQLAlchemyError as exc:
            self.notifier.logger.error("alert store unavailable, %s/%s/%s not resolved: %s", source, condition,
                                       window, type(exc).__name__)
            return DispatchResult(False, False, "unrecorded", error=type(exc).__name__)
        if decision is None:
            return DispatchResult(False, False, "not_open")
        if not decision.send:
            return DispatchResult(False, False, decision.reason, record=decision.record)
        return self._deliver(decision, alert_of(decision.record), now)

    def resolve_alert(self, alert: Alert, now: datetime | None = None) -> DispatchResult:
        return self.resolve(*alert.key, now=now)

    def retry_unsent(self, now: datetime | None = None, limit: int = 50) -> list[DispatchResult]:
        """Deliver the notices still owed whose retry time has come (call it on every sensor tick)."""
        now = now or self.clock()
        try:
            claimed = self.store.claim_unsent(now, limit)
        except SQLAlchemyError as exc:
            self.notifier.logger.error("alert store unavailable, unsent alerts not retried: %s", type(exc).__name__)
            return []
        return [self._deliver(d, alert_of(d.record), now) for d in claimed]

    def _deliver(self, decision: AlertDecision, alert: Alert, now: datetime) -> DispatchResult:
        record = decision.record
        notice = Notice(NoticeKind(decision.kind), alert, decision.reason, decision.notice_key or "", now,
                        record.opened_at, record.raised_count)
        result = self.notifier.notify(notice, decision.channels)
        try:
            updated = self.store.mark_sent(record.id, decision.seq or 0, now,
                                           delivered=result.delivered, failed=result.failed,
                                           sent_severity=alert.severity.label, sent_figure=alert.figure,
                                           retry_after_s=self.retry_after_s)
        except SQLAlchemyError as exc:  # sent but not recorded: the lease expires and it is sent once more
            self.notifier.logger.error("alert %s sent but not recorded: %s", notice.key, type(exc).__name__)
            updated = None
        return DispatchResult(True, result.ok, decision.reason, notice.key, result.results, updated or record)

    def _unrecorded(self, notice: Notice, exc: Exception) -> DispatchResult:
        self.notifier.log(notice)
        self.notifier.logger.error("alert store unavailable, alert %s/%s/%s not recorded or sent: %s",
                                   *notice.alert.key, type(exc).__name__)
        return DispatchResult(False, False, "unrecorded", error=type(exc).__name__)


__all__ = ["AlertDispatcher", "AlertLogger", "Channel", "ChannelError", "ChannelResult", "DispatchResult",
           "EmailChannel", "LOGGER_NAME", "NotifyResult", "Notifier", "WebhookChannel", "alert_of", "facts_of",
           "parse_recipients", "state_of"]
