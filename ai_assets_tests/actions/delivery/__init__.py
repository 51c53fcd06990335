"""Helpers for the outbox delivery tests: rows inserted through the models, a settable clock."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ai_assets.ops_db.engine import Sessions
from ai_assets.ops_db.tables import Action, OutboxMessage

T0 = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)


def key_for(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def email_spec(n: int, **changes: Any) -> dict[str, Any]:
    return {"idempotency_key": key_for(f"email-{n}"), "kind": "email", "destination": f"customer{n}@example.org",
            "subject": f"Your case #{n}", "payload": {"body": f"Hello {n},\nwe opened a case for you."}, **changes}


def customer_email_spec(n: int, **changes: Any) -> dict[str, Any]:
    """An e-mail row as ops_db writes it, to a customer address in the default recipient domain:
    the only rows the mail transports (built with their default domain) will send."""
    return email_spec(n, **{"destination": f"c-{n:06d}@customers.bank.example", **changes})


def webhook_spec(n: int, **changes: Any) -> dict[str, Any]:
    return {"idempotency_key": key_for(f"webhook-{n}"), "kind": "webhook", "destination": "case.opened",
            "subject": None, "payload": {"case_id": n, "queue": "cards", "priority": "P2"}, **changes}


def add_rows(sessions: Sessions, *specs: dict[str, Any], at: datetime = T0, partition: str | None = "2031-01-01",
             ) -> list[int]:
    """Insert outbox rows (due at `at` unless a spec says otherwise) under one new action; their ids."""
    with sessions.write() as s:
        message_id = uuid.uuid4().hex
        action = Action(idempotency_key=key_for(f"action-{message_id}"), message_id=message_id,
                        action="open_case", decision="auto", outcome="acted", policy_version="policy-1",
                        partition=partition)
        s.add(action)
        s.flush()
        rows = [OutboxMessage(action_id=action.id, message_id=message_id, partition=partition,
                              **{"next_attempt_at": at, **spec}) for spec in specs]
        s.add_all(rows)
        s.flush()
        return [row.id for row in rows]


@dataclass
class FakeClock:
    """A clock the test moves; `sleep` moves it too and remembers how long it was asked to wait."""

    now: datetime = T0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
