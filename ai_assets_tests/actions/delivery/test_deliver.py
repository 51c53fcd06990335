"""deliver_due / deliver_until_settled on SQLite and PostgreSQL, against real SMTP and HTTP receivers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from ai_assets.actions.delivery import (
    DeliveryReport,
    FileEventSink,
    FileMailSink,
    SmtpMailer,
    Transport,
    WebhookPoster,
    backoff_delay,
    deliver_due,
    deliver_until_settled,
)
from ai_assets.ops_db import AuditContext, OpsDb
from ai_assets.ops_db.outbox import OutboxRow, OutboxStore
from ai_assets.ops_db.types import utcnow
from ai_assets_tests.actions.delivery import T0, FakeClock, add_rows, customer_email_spec, key_for, webhook_spec
from ai_assets_tests.doubles import SmtpReceiver, WebhookReceiver

SMTP_PASSWORD = "smtp-pa55-Zq8wKx"
WEBHOOK_SECRET = "whsec-Hk29Lmq7Pz"


@pytest.fixture
def store(ops: OpsDb) -> OutboxStore:
    return OutboxStore(ops.sessions)


def balanced(report: DeliveryReport) -> DeliveryReport:
    assert report.attempted == report.delivered + report.failed + report.dead
    assert len(report.dead_keys) == report.dead
    return report


def message_id(key: str) -> str:
    return f"<{key}@ai-assets>"


def test_email_is_delivered_through_smtp_with_its_stable_message_id(ops: OpsDb, store: OutboxStore,
                                                                    smtp: SmtpReceiver):
    ids = add_rows(ops.sessions, *(customer_email_spec(n) for n in range(3)), at=utcnow() - timedelta(seconds=1))
    events: list[tuple[str, str, dict]] = []
    report = deliver_due(store, {"email": SmtpMailer("127.0.0.1", smtp.port)},
                         on_event=lambda kind, row, detail: events.append((kind, row.idempotency_key, detail)))
    assert balanced(report) == DeliveryReport(attempted=3, delivered=3)
    keys = [key_for(f"email-{n}") for n in range(3)]
    assert smtp.message_ids() == [message_id(k) for k in keys]
    assert [m.to for m in smtp.messages] == [(f"c-{n:06d}@customers.bank.example",) for n in range(3)]
    for row_id in ids:
        row = store.get(row_id)
        assert (row.status, row.attempts, row.lease_until, row.last_error) == ("delivered", 1, None, None)
        assert [(d.attempt, d.outcome, d.error) for d in store.deliveries(row_id)] == [(1, "delivered", None)]
    assert [(kind, key) for kind, key, _ in events] == [("delivered", k) for k in keys]
    assert set(events[0][2]) == {"attempt", "latency_ms"} and events[0][2]["attempt"] == 1
    # Nothing is due any more: a second pass sends nothing.
    assert deliver_due(store, {"email": SmtpMailer("127.0.0.1", smtp.port)}) == DeliveryReport()
    assert len(smtp.messages) == 3


def test_smtp_down_then_back_delivers_each_message_exactly_once(ops: OpsDb, store: OutboxStore, smtp: SmtpReceiver):
    ids = add_rows(ops.sessions, customer_email_spec(1), customer_email_spec(2))
    transports = {"email": SmtpMailer("127.0.0.1", smtp.port, timeout_s=5)}
    clock = FakeClock()
    smtp.stop()

    down = deliver_due(store, transports, clock=clock, rng=random.Random(1), base_backoff_s=10)
    assert balanced(down) == DeliveryReport(attempted=2, failed=2)
    for row_id in ids:
        row = store.get(row_id)
        assert (row.status, row.attempts, row.lease_until) == ("pending", 1, None)
        assert "ConnectionRefused" in row.last_error
        assert T0 < row.next_attempt_at <= T0 + timedelta(seconds=10)  # first retry: jitter in [0, base]
        (attempt,) = store.deliveries(row_id)
        assert (attempt.attempt, attempt.outcome, attempt.error) == (1, "failed", row.last_error)

    smtp.start()  # same port
    assert deliver_due(store, transports, clock=clock) == DeliveryReport()  # not due yet
    clock.advance(10)
    back = deliver_due(store, transports, clock=clock)
    assert balanced(back) == DeliveryReport(attempted=2, delivered=2)
    assert sorted(smtp.message_ids()) == sorted(message_id(key_for(f"email-{n}")) for n in (1, 2))
    assert smtp.duplicates() == {}
    assert [d.outcome for d in store.deliveries(ids[0])] == ["failed", "delivered"]
    assert store.counts() == {"pending": 0, "delivered": 2, "dead": 0}


def test_webhook_503_then_delivered_once_with_a_verifiable_signature(ops: OpsDb, store: OutboxStore,
                                                                     hooks: WebhookReceiver):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    transports = {"webhook": WebhookPoster(hooks.url, secret=WEBHOOK_SECRET)}
    clock = FakeClock()
    hooks.fail_next(1, status=503)

    first = deliver_due(store, transports, clock=clock, rng=random.Random(2))
    assert balanced(first) == DeliveryReport(attempted=1, failed=1)
    row = store.get(row_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "http 503")
    assert row.next_attempt_at > T0 and store.deliveries(row_id)[0].error == "http 503"

    clock.now = row.next_attempt_at
    assert balanced(deliver_due(store, transports, clock=clock)) == DeliveryReport(attempted=1, delivered=1)
    (event,) = hooks.events
    key = key_for("webhook-1")
    assert event.idempotency_key == key and event.headers["x-event"] == "case.opened"
    assert event.json == {"case_id": 1, "queue": "cards", "priority": "P2"}
    digest = hmac.new(WEBHOOK_SECRET.encode(), event.body, hashlib.sha256).hexdigest()
    assert event.headers["x-signature"] == f"sha256={digest}"
    assert [r.status for r in hooks.requests] == [503, 200] and hooks.duplicates() == {}


def test_retry_after_is_a_floor_for_the_next_attempt(ops: OpsDb, store: OutboxStore, hooks: WebhookReceiver):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    hooks.fail_next(1, status=429, headers={"Retry-After": "120"})
    deliver_due(store, {"webhook": WebhookPoster(hooks.url)}, clock=FakeClock(), base_backoff_s=1.0)
    assert store.get(row_id).next_attempt_at >= T0 + timedelta(seconds=120)


def test_a_row_is_dead_after_max_attempts_and_an_operator_can_requeue_it(ops: OpsDb, store: OutboxStore,
                                                                         hooks: WebhookReceiver):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    key = key_for("webhook-1")
    transports = {"webhook": WebhookPoster(hooks.url)}
    clock = FakeClock()
    hooks.fail_next(4, status=500)
    reports = []
    for _ in range(4):
        reports.append(balanced(deliver_due(store, transports, clock=clock, max_attempts=3, rng=random.Random(3))))
        clock.advance(3600)
    assert reports == [DeliveryReport(attempted=1, failed=1), DeliveryReport(attempted=1, failed=1),
                       DeliveryReport(attempted=1, dead=1, dead_keys=(key,)), DeliveryReport()]
    row = store.get(row_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 3, "http 500")
    assert [(d.attempt, d.outcome) for d in store.deliveries(row_id)] == [(1, "failed"), (2, "failed"), (3, "dead")]
    assert [r.id for r in store.dead_letters()] == [row_id] and len(hooks.requests) == 3

    hooks.fail_next(0)
    assert store.requeue(row_id, now=clock.now)
    # One more try (the 4th 500 was left queued): it fails and the row is dead again at once.
    again = deliver_due(store, transports, clock=clock, max_attempts=3)
    assert balanced(again) == DeliveryReport(attempted=1, dead=1, dead_keys=(key,))
    assert store.requeue(row_id, now=clock.now)
    assert balanced(deliver_due(store, transports, clock=clock, max_attempts=3)) == DeliveryReport(
        attempted=1, delivered=1)
    assert [d.attempt for d in store.deliveries(row_id)] == [1, 2, 3, 4, 5]
    assert len(hooks.events) == 1


def test_a_permanent_failure_is_dead_at_once(ops: OpsDb, store: OutboxStore, hooks: WebhookReceiver):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    hooks.fail_next(1, status=400, body="unknown event")
    events: list[tuple[str, dict]] = []
    report = deliver_due(store, {"webhook": WebhookPoster(hooks.url)}, clock=FakeClock(), max_attempts=5,
                         on_event=lambda kind, row, detail: events.append((kind, detail)))
    assert balanced(report) == DeliveryReport(attempted=1, dead=1, dead_keys=(key_for("webhook-1"),))
    row = store.get(row_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "http 400: unknown event")
    assert events == [("dead", {"attempt": 1, "latency_ms": events[0][1]["latency_ms"],
                                "error": "http 400: unknown event", "retryable": False, "next_attempt_at": None})]


class _MeetFirst:
    """Holds each thread's first send until every thread has reached its own: the deliverers
    are then all mid-pass over the same due rows, racing for the rest."""

    def __init__(self, parties: int):
        self._barrier = threading.Barrier(parties, timeout=60)
        self._local = threading.local()

    def wrap(self, transport: Transport) -> Transport:
        gate = self

        class Gated:
            def send(self, row: OutboxRow) -> None:
                if not getattr(gate._local, "met", False):
                    gate._local.met = True
                    gate._barrier.wait()
                transport.send(row)

        return Gated()


def test_concurrent_deliverers_deliver_each_row_exactly_once(ops: OpsDb, store: OutboxStore, smtp: SmtpReceiver,
                                                             hooks: WebhookReceiver):
    specs = [spec for n in range(20) for spec in (webhook_spec(n), customer_email_spec(n))]
    ids = add_rows(ops.sessions, *specs)
    gate = _MeetFirst(2)
    transports = {"email": gate.wrap(SmtpMailer("127.0.0.1", smtp.port)),
                  "webhook": gate.wrap(WebhookPoster(hooks.url))}
    reports: list[DeliveryReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(deliver_due(store, transports, clock=FakeClock()))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = balanced(reports[0] + reports[1])
    assert (total.attempted, total.delivered, total.lost_lease) == (40, 40, 0)
    assert all(r.attempted > 0 for r in reports)  # both really delivered
    assert sorted(hooks.keys()) == sorted(key_for(f"webhook-{n}") for n in range(20)) and hooks.duplicates() == {}
    assert sorted(smtp.message_ids()) == sorted(message_id(key_for(f"email-{n}")) for n in range(20))
    assert smtp.duplicates() == {}
    assert all([d.attempt for d in store.deliveries(i)] == [1] for i in ids)


def test_a_late_result_after_the_lease_ran_out_is_not_recorded_twice(ops: OpsDb, store: OutboxStore, tmp_path: Path):
    """A deliverer slower than its lease: another takes the row over and records it; the
    slow one's result is refused (counted as lost_lease), so the row has one attempt."""
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    sink = FileEventSink(tmp_path / "events")
    taken_over: list[DeliveryReport] = []

    class SlowerThanTheLease:
        def send(self, row: OutboxRow) -> None:
            later = FakeClock(T0 + timedelta(seconds=61))
            taken_over.append(deliver_due(store, {"webhook": sink}, lease_s=60, clock=later))
            sink.send(row)

    events: list[str] = []
    slow = deliver_due(store, {"webhook": SlowerThanTheLease()}, lease_s=60, clock=FakeClock(),
                       on_event=lambda kind, row, detail: events.append(kind), audit=AuditContext("slow", "run-s"))
    assert balanced(slow) == DeliveryReport(lost_lease=1) and events == ["lost_lease"]
    assert taken_over == [DeliveryReport(attempted=1, delivered=1)]
    assert [(d.attempt, d.outcome) for d in store.deliveries(row_id)] == [(1, "delivered")]
    assert store.get(row_id).attempts == 1
    # The late send is in the audit log: it may have reached the receiver a second time.
    assert [(e.run_id, e.detail["outcome"], e.detail["attempt"]) for e in ops.audit.entries()] == [("run-s", "lost_lease", 1)]


def _fail_delivery_audit_rows(ops: OpsDb) -> None:
    """A real database fault at the audit insert of a delivery attempt."""
    with ops.engine.begin() as conn:
        if ops.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log WHEN NEW.event = 'delivery' "
                                 "BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END")
        else:
            conn.exec_driver_sql("""
                CREATE FUNCTION fail_audit() RETURNS trigger AS $$ BEGIN
                  IF NEW.event = 'delivery' THEN RAISE EXCEPTION 'injected audit failure'; END IF;
                  RETURN NEW; END $$ LANGUAGE plpgsql;
                CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_audit();""")


def test_an_attempt_and_its_audit_row_are_recorded_together_or_not_at_all(ops: OpsDb, store: OutboxStore,
                                                                         smtp: SmtpReceiver):
    (row_id,) = add_rows(ops.sessions, customer_email_spec(1), partition="2026-11-20")
    mailer = {"email": SmtpMailer("127.0.0.1", smtp.port)}
    audit = AuditContext("deliverer", "run-1")
    _fail_delivery_audit_rows(ops)
    with pytest.raises(Exception, match="injected audit failure"):
        deliver_due(store, mailer, clock=FakeClock(), audit=audit)
    # Sent, but neither the attempt nor its audit row was recorded: the row is still pending.
    assert len(smtp.messages) == 1
    assert store.deliveries(row_id) == [] and ops.audit.entries() == []
    assert (store.get(row_id).status, store.get(row_id).attempts) == ("pending", 0)
    with ops.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER fail_audit" + ("" if ops.engine.dialect.name == "sqlite" else " ON audit_log"))
    # Once the lease has run out the row is sent again, under the same Message-ID, and recorded with its audit row.
    again = deliver_due(store, mailer, clock=FakeClock(T0 + timedelta(seconds=61)), audit=audit)
    assert balanced(again) == DeliveryReport(attempted=1, delivered=1)
    assert smtp.message_ids() == [message_id(key_for("email-1"))] * 2
    entries = ops.audit.entries()
    assert [(d.attempt, d.outcome) for d in store.deliveries(row_id)] == [(1, "delivered")]
    assert [(e.event, e.partition, e.run_id, e.detail["outbox_id"], e.detail["attempt"], e.detail["outcome"])
            for e in entries] == [("delivery", "2026-11-20", "run-1", row_id, 1, "delivered")]


def test_secrets_never_reach_the_database_events_or_logs(ops: OpsDb, store: OutboxStore, hooks: WebhookReceiver,
                                                        caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    mail_id, hook_id = add_rows(ops.sessions, customer_email_spec(1), webhook_spec(1))
    details: list[dict] = []
    with SmtpReceiver(credentials={"outbox": SMTP_PASSWORD}) as smtp:
        # Receivers that quote the secret back in their refusal.
        smtp.reject_next(1, reply=f"451 4.7.0 password {SMTP_PASSWORD} expires soon")
        hooks.fail_next(1, status=401, body=f"signature must be made with {WEBHOOK_SECRET}")
        transports = {"email": SmtpMailer("127.0.0.1", smtp.port, username="outbox", password=SMTP_PASSWORD),
                      "webhook": WebhookPoster(hooks.url, secret=WEBHOOK_SECRET)}
        report = deliver_due(store, transports, clock=FakeClock(), audit=AuditContext("deliverer", "run-1"),
                             on_event=lambda kind, row, detail: details.append(detail))
    assert balanced(report) == DeliveryReport(attempted=2, failed=1, dead=1, dead_keys=(key_for("webhook-1"),))
    audited = [e.detail for e in ops.audit.entries()]
    assert [d["outcome"] for d in audited] == ["failed", "dead"]
    recorded = [store.get(i).last_error for i in (mail_id, hook_id)]
    recorded += [d.error for i in (mail_id, hook_id) for d in store.deliveries(i)]
    assert recorded[0] == "smtp message refused: 451 4.7.0 password *** expires soon"
    assert recorded[1] == "http 401: signature must be made with ***"
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("ai_assets"))
    assert "4.7.0 password ***" in ours  # the failures were logged ...
    for text in [*recorded, ours, repr(details), repr(audited), repr(transports)]:
        assert SMTP_PASSWORD not in text and WEBHOOK_SECRET not in text  # ... without the secrets


def test_deliver_until_settled_sleeps_until_the_next_retry(ops: OpsDb, store: OutboxStore, hooks: WebhookReceiver):
    add_rows(ops.sessions, webhook_spec(1), webhook_spec(2))
    hooks.fail_next(3, status=503)
    clock = FakeClock()
    report = deliver_until_settled(store, {"webhook": WebhookPoster(hooks.url)}, deadline_s=3600, clock=clock,
                                   sleep=clock.sleep, rng=random.Random(4), base_backoff_s=5)
    assert balanced(report) == DeliveryReport(attempted=5, delivered=2, failed=3)
    assert sorted(hooks.keys()) == sorted(key_for(f"webhook-{n}") for n in (1, 2)) and hooks.duplicates() == {}
    assert clock.slept and all(0 < s <= 10 for s in clock.slept)  # backoff caps: 5s, then 10s
    assert store.counts() == {"pending": 0, "delivered": 2, "dead": 0}


def test_deliver_until_settled_leaves_rows_due_after_the_deadline(ops: OpsDb, store: OutboxStore,
                                                                  hooks: WebhookReceiver):
    (row_id,) = add_rows(ops.sessions, webhook_spec(1))
    hooks.fail_next(1, status=503, headers={"Retry-After": "600"})
    clock = FakeClock()
    report = deliver_until_settled(store, {"webhook": WebhookPoster(hooks.url)}, deadline_s=30, clock=clock,
                                   sleep=clock.sleep)
    assert balanced(report) == DeliveryReport(attempted=1, failed=1)
    assert clock.slept == [] and store.get(row_id).status == "pending"  # for the next run


def test_rows_without_a_transport_are_left_pending(ops: OpsDb, store: OutboxStore, tmp_path: Path):
    mail_id, hook_id = add_rows(ops.sessions, customer_email_spec(1), webhook_spec(1))
    clock = FakeClock()
    report = deliver_until_settled(store, {"email": FileMailSink(tmp_path / "mail")}, deadline_s=60, clock=clock,
                                   sleep=clock.sleep)
    assert balanced(report) == DeliveryReport(attempted=1, delivered=1)
    assert store.get(mail_id).status == "delivered"
    assert (store.get(hook_id).status, store.get(hook_id).attempts) == ("pending", 0)
    assert [p.name for p in (tmp_path / "mail").iterdir()] == [f"{key_for('email-1')}.eml"]


def test_an_unexpected_transport_error_is_recorded_and_the_pass_goes_on(ops: OpsDb, store: OutboxStore,
                                                                        tmp_path: Path):
    broken_id, fine_id = add_rows(ops.sessions, webhook_spec(1), webhook_spec(2))
    sink = FileEventSink(tmp_path / "events")

    class Buggy:
        def send(self, row: OutboxRow) -> None:
            if row.id == broken_id:
                raise KeyError("customer_name")
            sink.send(row)

    report = deliver_due(store, {"webhook": Buggy()}, clock=FakeClock())
    assert balanced(report) == DeliveryReport(attempted=2, delivered=1, failed=1)
    broken = store.get(broken_id)
    assert (broken.status, broken.last_error) == ("pending", "unexpected KeyError: 'customer_name'")
    assert store.get(fine_id).status == "delivered"


def test_file_sinks_deliver_the_demo_outbox(ops: OpsDb, store: OutboxStore, tmp_path: Path):
    add_rows(ops.sessions, customer_email_spec(1), webhook_spec(1), customer_email_spec(2))
    transports = {"email": FileMailSink(tmp_path / "mail"), "webhook": FileEventSink(tmp_path / "events")}
    report = deliver_until_settled(store, transports, deadline_s=5, clock=FakeClock())
    assert balanced(report) == DeliveryReport(attempted=3, delivered=3)
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == sorted(
        f"{key_for(f'email-{n}')}.eml" for n in (1, 2))
    assert [p.name for p in (tmp_path / "events").iterdir()] == [f"{key_for('webhook-1')}.json"]


# --- backoff -----------------------------------------------------------------------------


def test_backoff_is_capped_exponential_full_jitter():
    rng = random.Random(5)
    draws = {attempt: [backoff_delay(attempt, 1.0, 300.0, rng) for _ in range(200)] for attempt in (1, 2, 5, 9, 10, 60)}
    for attempt, caps in ((1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, 300.0), (60, 300.0)):
        assert all(0.0 <= d <= caps for d in draws[attempt])
        assert max(draws[attempt]) > caps * 0.9  # the whole range is used, not a fixed delay
    assert backoff_delay(10_000, 1.0, 300.0, random.Random(0)) <= 300.0  # no overflow
    # Deterministic with a seeded generator.
    assert [backoff_delay(3, 1.0, 300.0, random.Random(7)) for _ in range(2)] == [
        backoff_delay(3, 1.0, 300.0, random.Random(7))] * 2
    # A receiver's Retry-After is a floor, itself capped.
    assert backoff_delay(1, 1.0, 300.0, random.Random(0), retry_after_s=42.0) == 42.0
    assert backoff_delay(1, 1.0, 300.0, random.Random(0), retry_after_s=10_000.0) == 300.0
    with pytest.raises(ValueError):
        backoff_delay(0, 1.0, 300.0, random.Random(0))
