"""Overdue review items are raised to the senior queue, once, and a person is alerted, once.

An item is overdue when it is still `open` in the standard queue after its due time (`due_at`,
from the routing policy's review time per priority; rows written before due times were recorded
have none and count as due when they arrived). `escalate_overdue` moves each with one
conditional UPDATE — `WHERE id = :id AND status = 'open' AND review_queue = 'standard' AND
due time < now` — and returns only the items its own UPDATE matched: two sensor ticks (or two
daemons) running at once cannot both move one item, and an item a reviewer decided meanwhile
is left alone. The move bumps the item's version (a reviewer who read it before must re-read)
and writes an `escalated` audit row in the same transaction.

The alert (`review_overdue_alert`) goes through layer 4 (AlertStore + the notifier's
dispatcher), keyed (`review_overdue`, `review_item:<id>`, `<id>`): the alerts table's unique
key makes it one row and one notice per item, however many ticks raise it. Its summary names
the reason's category, the priority and the age, never the message text or a person's name
(reasons such as `case_conflict: case 5 changed by alice ...` are cut at the colon). If a tick
dies after moving an item but before raising its alert, `unalerted_escalations` finds the item
on the next tick (escalated, still open, no alert row), so the alert is late but not lost.
Alerts are not resolved when the item is decided: a resolution would be a second notice.
The alert links to the item's page only when the review app's URL is given (`review_url`): a
bare path would be rendered under the Dagster UI's URL by the notifier.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import String, and_, cast, exists, func, literal, select, update

from ai_assets.monitoring.alerts import Alert, Severity, Source
from ai_assets.ops_db.audit import AuditContext, AuditEvent, add_entry
from ai_assets.ops_db.tables import AlertRow, ReviewItem, ReviewQueue, ReviewStatus
from ai_assets.ops_db.types import as_utc

if TYPE_CHECKING:
    from ai_assets.ops_db import OpsDb

ESCALATED = AuditEvent.ESCALATED  # the audit event
ESCALATION_ACTOR = "review escalation"
CONDITION_PREFIX = "review_item:"
DEFAULT_LIMIT = 500  # per call: a backlog is moved over several ticks, each tick short
ALERT_LOOKBACK = timedelta(days=7)  # how far back a lost alert is looked for


@dataclass(frozen=True)
class EscalatedItem:
    """An item this call moved to the senior queue (or, from `unalerted_escalations`, one moved
    earlier whose alert was never raised)."""

    id: int
    message_id: str
    reason: str
    priority: str
    queue: str
    created_at: datetime
    due_at: datetime | None
    escalated_at: datetime
    version: int

    @property
    def reason_category(self) -> str:
        """`below_threshold: 0.41 < 0.83` -> `below_threshold`: the part that names no person or case."""
        return self.reason.split(":", 1)[0].strip() or "review"

    def age(self, now: datetime) -> timedelta:
        return as_utc(now) - self.created_at


def _due(now: datetime):
    return func.coalesce(ReviewItem.due_at, ReviewItem.created_at) < now


def _item(row: ReviewItem, escalated_at: datetime, version: int) -> EscalatedItem:
    return EscalatedItem(row.id, row.message_id, row.reason, row.priority, row.queue, row.created_at, row.due_at,
                         escalated_at, version)


def escalate_overdue(db: OpsDb, now: datetime, *, limit: int = DEFAULT_LIMIT,
                     run_id: str | None = None) -> list[EscalatedItem]:
    """Move every overdue open item of the standard queue to the senior queue (at most `limit`,
    most overdue first); returns the items this call moved, each moved by exactly one caller."""
    now = as_utc(now, "now")
    standard_open = and_(ReviewItem.status == ReviewStatus.OPEN.value,
                         ReviewItem.review_queue == ReviewQueue.STANDARD.value, _due(now))
    with db.sessions.read() as s:
        ids = list(s.scalars(select(ReviewItem.id).where(standard_open)
                             .order_by(func.coalesce(ReviewItem.due_at, ReviewItem.created_at), ReviewItem.id)
                             .limit(limit)))
    ctx = AuditContext(ESCALATION_ACTOR, run_id)
    moved: list[EscalatedItem] = []
    for item_id in ids:
        with db.sessions.write() as s:  # one short transaction per item: a reviewer's write waits for one row
            done = s.execute(update(ReviewItem).where(ReviewItem.id == item_id, standard_open).values(
                review_queue=ReviewQueue.SENIOR.value, escalated_at=now, version=ReviewItem.version + 1)
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:  # decided, or moved by a concurrent tick, since the list was read
                continue
            row = s.get(ReviewItem, item_id)
            assert row is not None
            item = _item(row, now, row.version)
            due = item.due_at or item.created_at
            add_entry(s, ctx, ESCALATED, message_id=item.message_id, review_item_id=item.id,
                      priority=item.priority, reason=item.reason_category, due_at=due.isoformat(),
                      overdue_s=round((now - due).total_seconds()), review_queue=ReviewQueue.SENIOR.value)
        moved.append(item)
    return moved


def alert_condition(item_id: int) -> str:
    return f"{CONDITION_PREFIX}{item_id}"


def unalerted_escalations(db: OpsDb, now: datetime, *, limit: int = DEFAULT_LIMIT) -> list[EscalatedItem]:
    """Items escalated (within ALERT_LOOKBACK), still open, whose alert was never raised: what a
    tick that died between the move and the alert left behind."""
    now = as_utc(now, "now")
    alerted = exists().where(AlertRow.source == Source.REVIEW_OVERDUE.value,
                             AlertRow.condition == literal(CONDITION_PREFIX) + cast(ReviewItem.id, String),
                             AlertRow.time_window == cast(ReviewItem.id, String))
    with db.sessions.read() as s:
        rows = s.scalars(select(ReviewItem).where(
            ReviewItem.status == ReviewStatus.OPEN.value, ReviewItem.review_queue == ReviewQueue.SENIOR.value,
            ReviewItem.escalated_at.is_not(None), ReviewItem.escalated_at >= now - ALERT_LOOKBACK, ~alerted)
            .order_by(ReviewItem.id).limit(limit)).all()
        return [_item(r, r.escalated_at, r.version) for r in rows]


def item_path(item_id: int) -> str:
    """The review app's page of the item, as a path: `/items/<id>`."""
    return "/items/" + urllib.parse.quote(str(item_id), safe="")


def item_link(item_id: int, review_url: str | None = None) -> str | None:
    """The full URL of the item's page, `<review_url>/items/<id>`; None without the review app's
    URL. Not the bare path: the notifier prefixes a path with the Dagster UI's URL, where the
    review app does not live, and a link that leads nowhere is worse than none (the summary
    names the path)."""
    return review_url.rstrip("/") + item_path(item_id) if review_url else None


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def review_overdue_alert(item: EscalatedItem, now: datetime, *, review_url: str | None = None) -> Alert:
    """The one alert of an escalated item: warning, error for P1; no message text in it."""
    due = item.due_at or item.created_at
    summary = (f"review item {item.id} ({item.priority}, {item.reason_category}, queue {item.queue}) waited "
               f"{_hours(item.age(now))}, due after {_hours(due - item.created_at)}: raised to the senior "
               f"review queue; review app {item_path(item.id)}")
    return Alert(Source.REVIEW_OVERDUE, alert_condition(item.id), str(item.id),
                 Severity.ERROR if item.priority == "P1" else Severity.WARNING, summary,
                 link=item_link(item.id, review_url))


__all__ = ["ESCALATED", "EscalatedItem", "alert_condition", "escalate_overdue", "item_link", "item_path",
           "review_overdue_alert", "unalerted_escalations"]
