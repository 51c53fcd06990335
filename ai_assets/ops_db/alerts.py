"""The alerts table: one row per alert condition and window, and the notices owed to people.

The store records and serialises; it does not know the rules. `raise_alert` and `clear` take a
`rule` (ai_assets.monitoring.alerts.decide / decide_resolved, adapted by the dispatcher in
ai_assets.monitoring.notify) and apply it to the row inside one write transaction, so the
read, the decision and the write are one step even when two sensor ticks or two processes raise
the same condition at once:

- the row is read `FOR UPDATE` (PostgreSQL; SQLite's write transactions begin IMMEDIATE and
  already serialise), and a first raise inserts it under the unique constraint on
  (source, condition, time_window): the loser of an insert race sees the winner's row, after
  its commit, and decides on it;
- a notice the rule sends is *claimed*: `pending_*` names it and the channels still owed, and
  `retry_at` = now + lease, during which no other caller sends it (the rule says in_flight);
- delivery happens outside the transaction (never hold a lock across the network), then
  `mark_sent` records which channels took it; the rest stay owed and `retry_at` says when to try
  again (`claim_unsent`), so a delivery failure never loses the notice.

No channel URL, address list or credential is stored here: only channel names ("webhook",
"email") and errors the notifier has already redacted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import AlertNoticeKind, AlertRow, AlertSeverity, AlertStatus
from ai_assets.ops_db.types import as_utc

DEFAULT_LEASE_S = 120.0  # longer than one notice's worst delivery (webhook + SMTP timeouts)
DEFAULT_RETRY_AFTER_S = 60.0  # a failed notice waits this long, so a dead receiver is not hammered every raise
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class AlertFacts:
    """What a sensor saw, in plain values (the store cannot import the monitoring layer's Alert)."""

    source: str
    condition: str
    window: str
    severity: str  # an AlertSeverity value
    summary: str
    figure: float | None = None
    threshold: float | None = None
    higher_is_worse: bool = True
    partition: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class AlertRecord:
    """A detached snapshot of one `alerts` row."""

    id: int
    source: str
    condition: str
    window: str
    status: str
    severity: str
    summary: str
    figure: float | None
    threshold: float | None
    higher_is_worse: bool
    partition: str | None
    link: str | None
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    raised_count: int
    notices: int
    sent_severity: str | None
    sent_figure: float | None
    last_sent_at: datetime | None
    pending_kind: str | None
    pending_reason: str | None
    pending_channels: tuple[str, ...]
    retry_at: datetime | None
    attempts: int
    last_error: str | None
    updated_at: datetime

    @classmethod
    def of(cls, r: AlertRow) -> AlertRecord:
        return cls(id=r.id, source=r.source, condition=r.condition, window=r.time_window, status=r.status,
                   severity=r.severity, summary=r.summary, figure=r.figure, threshold=r.threshold,
                   higher_is_worse=r.higher_is_worse, partition=r.partition, link=r.link, opened_at=r.opened_at,
                   last_seen_at=r.last_seen_at, resolved_at=r.resolved_at, raised_count=r.raised_count,
                   notices=r.notices, sent_severity=r.sent_severity, sent_figure=r.sent_figure,
                   last_sent_at=r.last_sent_at, pending_kind=r.pending_kind, pending_reason=r.pending_reason,
                   pending_channels=tuple(r.pending_channels or ()), retry_at=r.retry_at, attempts=r.attempts,
                   last_error=r.last_error, updated_at=r.updated_at)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.source, self.condition, self.window

    def notice_key(self, seq: int | None = None) -> str:
        """`alert-<id>-<seq>`: the Idempotency-Key / Message-ID of notice `seq` (default: the latest)."""
        return f"alert-{self.id}-{self.notices if seq is None else seq}"

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-able values (times as ISO 8601), for `ai-assets alerts --json`."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else \
                list(value) if isinstance(value, tuple) else value
        return out


# The rule: given the row as it is (None: never raised), send a notice or not, and why.
Rule = Callable[[AlertRecord | None], tuple[bool, str]]


@dataclass(frozen=True)
class AlertDecision:
    """The outcome of one raise or clear: the row after it, and whether a notice is to go out now.
    `seq` is that notice's sequence number (its key: `record.notice_key(seq)`) and `channels` the
    channels that still owe it; empty when nothing is to be sent."""

    record: AlertRecord
    send: bool
    reason: str
    kind: str | None = None  # AlertNoticeKind value when send
    seq: int | None = None
    channels: tuple[str, ...] = ()

    @property
    def notice_key(self) -> str | None:
        return self.record.notice_key(self.seq) if self.seq is not None else None


def truncate_error(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."


def _key(source: str, condition: str, window: str) -> ColumnElement[bool]:
    return (AlertRow.source == source) & (AlertRow.condition == condition) & (AlertRow.time_window == window)


def _check_severity(value: str | None, label: str) -> None:
    if value is not None and value not in {s.value for s in AlertSeverity}:
        raise ValueError(f"{label}: unknown severity {value!r}")


class AlertStore:
    """Access to the `alerts` table. `lease_s`: how long a claimed notice is another caller's to
    deliver before it may be sent again (a crashed sender's notice is retried after it)."""

    def __init__(self, sessions: Sessions, lease_s: float = DEFAULT_LEASE_S):
        self.sessions = sessions
        self.lease_s = lease_s

    # --- reads -------------------------------------------------------------------------------

    def get(self, source: str, condition: str, window: str) -> AlertRecord | None:
        with self.sessions.read() as s:
            row = s.execute(select(AlertRow).where(_key(source, condition, window))).scalar_one_or_none()
            return AlertRecord.of(row) if row is not None else None

    def list(self, *, open_only: bool = False, since: datetime | None = None, source: str | None = None,
             unsent_only: bool = False, limit: int | None = 100) -> list[AlertRecord]:
        """Newest first (last raised or cleared): what `ai-assets alerts` shows."""
        query = select(AlertRow)
        if open_only:
            query = query.where(AlertRow.status == AlertStatus.OPEN.value)
        if since is not None:
            query = query.where(AlertRow.updated_at >= as_utc(since, "since"))
        if source is not None:
            query = query.where(AlertRow.source == source)
        if unsent_only:
            query = query.where(AlertRow.pending_kind.is_not(None))
        query = query.order_by(AlertRow.updated_at.desc(), AlertRow.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.sessions.read() as s:
            return [AlertRecord.of(r) for r in s.scalars(query)]

    # --- raise and clear ---------------------------------------------------------------------

    def raise_alert(self, facts: AlertFacts, now: datetime, rule: Rule, channels: Collection[str]) -> AlertDecision:
        """Record that `facts` hold at `now` and, in the same transaction, apply `rule`: a notice it
        sends is claimed for the caller (to all `channels`; a retry of a notice still owed keeps the
        channels that have not taken it, and its sequence number, so the key is the same)."""
        now = as_utc(now, "now")
        _check_severity(facts.severity, "severity")
        channels = tuple(dict.fromkeys(channels))
        attempts = 3  # an insert race is lost at most once (the row then exists); three is belt and braces
        for attempt in range(attempts):
            try:
                with self.sessions.write() as s:
                    return self._raise(s, facts, now, rule, channels)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _locked(self, s: Session, source: str, condition: str, window: str) -> AlertRow | None:
        return s.execute(select(AlertRow).where(_key(source, condition, window))
                         .with_for_update()).scalar_one_or_none()

    def _raise(self, s: Session, facts: AlertFacts, now: datetime, rule: Rule,
               channels: tuple[str, ...]) -> AlertDecision:
        row = self._locked(s, facts.source, facts.condition, facts.window)
        if row is None:
            send, reason = rule(None)
            row = AlertRow(source=facts.source, condition=facts.condition, time_window=facts.window,
                           status=AlertStatus.OPEN.value, opened_at=now, raised_count=0, notices=0,
                           pending_channels=[], attempts=0, **self._facts(facts, now))
            # A concurrent first raise of the same key: the unique constraint answers IntegrityError
            # (on PostgreSQL after the other transaction commits), and `raise_alert` runs this again.
            s.add(row)
            s.flush()
        else:
            send, reason = rule(AlertRecord.of(row))
            if row.status != AlertStatus.OPEN.value:  # a new episode: nobody has been told of this one
                row.status = AlertStatus.OPEN.value
                row.opened_at, row.resolved_at, row.raised_count = now, None, 0
                row.sent_severity = row.sent_figure = row.last_sent_at = None
                row.pending_kind = row.pending_reason = row.retry_at = row.last_error = None
                row.pending_channels, row.attempts = [], 0
            for name, value in self._facts(facts, now).items():
                setattr(row, name, value)
        row.raised_count += 1
        return self._claim(s, row, send, reason, AlertNoticeKind.FIRING.value, now, channels)

    @staticmethod
    def _facts(facts: AlertFacts, now: datetime) -> dict[str, object]:
        return dict(severity=facts.severity, summary=facts.summary, figure=facts.figure, threshold=facts.threshold,
                    higher_is_worse=facts.higher_is_worse, partition=facts.partition, link=facts.link,
                    last_seen_at=now, updated_at=now)

    def _claim(self, s: Session, row: AlertRow, send: bool, reason: str, kind: str, now: datetime,
               channels: tuple[str, ...]) -> AlertDecision:
        if not send:
            s.flush()
            return AlertDecision(AlertRecord.of(row), False, reason)
        retry = row.pending_kind == kind and bool(row.pending_channels) and reason == "unsent"
        if not retry:  # a new notice: every channel owes it, under the next sequence number
            row.notices += 1
            row.pending_kind, row.pending_reason = kind, reason
            row.pending_channels, row.attempts, row.last_error = list(channels), 0, None
        row.retry_at = now + timedelta(seconds=self.lease_s)
        s.flush()
        record = AlertRecord.of(row)
        return AlertDecision(record, True, reason, kind, row.notices, record.pending_channels)

    def clear(self, source: str, condition: str, window: str, now: datetime, rule: Rule,
              channels: Collection[str]) -> AlertDecision | None:
        """The condition no longer holds: resolve an open row and, if `rule` says so (somebody was
        told it fired), claim a "resolved" notice; otherwise drop any notice still owed. None when
        the condition was never raised."""
        now = as_utc(now, "now")
        with self.sessions.write() as s:
            row = self._locked(s, source, condition, window)
            if row is None:
                return None
            send, reason = rule(AlertRecord.of(row))
            if row.status == AlertStatus.OPEN.value:
                row.status, row.resolved_at, row.updated_at = AlertStatus.RESOLVED.value, now, now
                if not send:  # nobody heard it fire: nothing to take back, nothing owed
                    row.pending_kind = row.pending_reason = row.retry_at = None
                    row.pending_channels = []
            return self._claim(s, row, send, reason, AlertNoticeKind.RESOLVED.value, now, tuple(channels))

    # --- delivery bookkeeping ----------------------------------------------------------------

    def claim_unsent(self, now: datetime, limit: int = 50) -> list[AlertDecision]:
        """Claim the notices still owed whose retry time has come (oldest first), each under a new
        lease: the caller delivers them and calls `mark_sent`."""
        now = as_utc(now, "now")
        due = or_(AlertRow.retry_at.is_(None), AlertRow.retry_at <= now)
        with self.sessions.read() as s:
            ids = list(s.scalars(select(AlertRow.id).where(AlertRow.pending_kind.is_not(None), due)
                                 .order_by(AlertRow.retry_at, AlertRow.id).limit(limit)))
        claimed: list[AlertDecision] = []
        for alert_id in ids:
            with self.sessions.write() as s:
                result = s.execute(update(AlertRow)
                                   .where(AlertRow.id == alert_id, AlertRow.pending_kind.is_not(None), due)
                                   .values(retry_at=now + timedelta(seconds=self.lease_s))
                                   .execution_options(synchronize_session=False))
                if result.rowcount != 1:
                    continue  # another caller claimed it first
                record = AlertRecord.of(s.execute(select(AlertRow).where(AlertRow.id == alert_id)).scalar_one())
            claimed.append(AlertDecision(record, True, "retry", record.pending_kind, record.notices,
                                         record.pending_channels))
        return claimed

    def mark_sent(self, alert_id: int, seq: int, now: datetime, *, delivered: Collection[str],
                  failed: Mapping[str, str] | None = None, sent_severity: str | None = None,
                  sent_figure: float | None = None, retry_after_s: float = DEFAULT_RETRY_AFTER_S) -> AlertRecord | None:
        """Record the outcome of delivering notice `seq`: `delivered` channels took it, `failed`
        ones ({channel: redacted error}) still owe it and are retried after `retry_after_s`. For a
        firing notice taken by any channel, `sent_severity`/`sent_figure` become what people were
        last told (the worse-than-before rule compares with them). A superseded notice (a newer
        one was claimed meanwhile) changes nothing but is not an error: None."""
        now = as_utc(now, "now")
        _check_severity(sent_severity, "sent_severity")
        failed = dict(failed or {})
        with self.sessions.write() as s:
            row = s.execute(select(AlertRow).where(AlertRow.id == alert_id).with_for_update()).scalar_one_or_none()
            if row is None or row.notices != seq or row.pending_kind is None:
                return None
            taken = set(delivered)
            # With no channel configured the log line was the delivery: people were told.
            told = bool(taken) or not row.pending_channels
            if told and row.pending_kind == AlertNoticeKind.FIRING.value:
                row.last_sent_at = now
                row.sent_severity = sent_severity or row.severity
                row.sent_figure = sent_figure
            remaining = [c for c in row.pending_channels if c not in taken]
            if not remaining:
                row.pending_kind = row.pending_reason = row.retry_at = row.last_error = None
                row.pending_channels = []
            else:
                row.pending_channels = remaining
                row.attempts += 1
                errors = "; ".join(f"{c}: {failed.get(c, 'not delivered')}" for c in remaining)
                row.last_error = truncate_error(errors)
                row.retry_at = now + timedelta(seconds=retry_after_s)
            row.updated_at = now
            s.flush()
            return AlertRecord.of(row)


__all__ = ["AlertDecision", "AlertFacts", "AlertRecord", "AlertStore", "DEFAULT_LEASE_S", "DEFAULT_RETRY_AFTER_S",
           "Rule"]
