"""The alerts table on SQLite and PostgreSQL: one row per condition and window under a unique
constraint, notices claimed in the same transaction as the decision, so concurrent sensor ticks
and processes raising the same condition send once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import inspect

from ai_assets.monitoring.alerts import asset_check_alert, decide, decide_resolved
from ai_assets.monitoring.notify import AlertDispatcher, Notifier, WebhookChannel, facts_of, state_of
from ai_assets.ops_db import OpsDb, create_engine_for
from ai_assets.ops_db.alerts import AlertStore
from ai_assets.ops_db.tables import AlertRow
from ai_assets_tests.doubles.receivers import WebhookReceiver

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DAY = "2025-03-03"


def alert(severity: str = "WARN", figure: float = 10.0, check: str = "no_empty_text"):
    return asset_check_alert("validated_messages", check, severity=severity, description="10 empty texts",
                             partition=DAY, now=NOW, figure=figure, threshold=0)


def raise_rule(a, now):
    def rule(record):
        verdict = decide(state_of(record) if record else None, a, now)
        return verdict.send, verdict.reason
    return rule


def resolve_rule(record):
    verdict = decide_resolved(state_of(record) if record else None)
    return verdict.send, verdict.reason


def test_raise_claims_one_notice_and_marks_it_sent(ops: OpsDb):
    store = AlertStore(ops.sessions, lease_s=120)
    a = alert()
    first = store.raise_alert(facts_of(a), NOW, raise_rule(a, NOW), ["webhook", "email"])
    assert first.send and first.reason == "new" and first.seq == 1 and first.channels == ("webhook", "email")
    assert first.notice_key == f"alert-{first.record.id}-1"
    # A second caller while the first holds the notice: in flight, nothing to send.
    second = store.raise_alert(facts_of(a), NOW + timedelta(seconds=5), raise_rule(a, NOW + timedelta(seconds=5)),
                               ["webhook", "email"])
    assert not second.send and second.reason == "in_flight" and second.record.raised_count == 2
    done = store.mark_sent(first.record.id, 1, NOW + timedelta(seconds=1), delivered=["webhook", "email"],
                           sent_severity="warning", sent_figure=10.0)
    assert done.pending_kind is None and done.last_sent_at == NOW + timedelta(seconds=1) and done.sent_figure == 10
    later = NOW + timedelta(minutes=1)
    assert store.raise_alert(facts_of(a), later, raise_rule(a, later), ["webhook"]).reason == "unchanged"
    # A superseded notice's outcome changes nothing.
    assert store.mark_sent(first.record.id, 1, later, delivered=["webhook"]) is None


def test_failed_channels_stay_owed_and_are_claimed_once_when_due(ops: OpsDb):
    store = AlertStore(ops.sessions, lease_s=120)
    a = alert()
    d = store.raise_alert(facts_of(a), NOW, raise_rule(a, NOW), ["webhook", "email"])
    rec = store.mark_sent(d.record.id, d.seq, NOW, delivered=["email"], failed={"webhook": "http 503"},
                          sent_severity="warning", sent_figure=10.0, retry_after_s=60)
    assert rec.pending_channels == ("webhook",) and rec.attempts == 1 and rec.last_error == "webhook: http 503"
    assert rec.last_sent_at == NOW  # the e-mail reached somebody
    assert store.claim_unsent(NOW + timedelta(seconds=30)) == []
    claimed = store.claim_unsent(NOW + timedelta(seconds=61))
    assert [(c.seq, c.channels, c.kind) for c in claimed] == [(1, ("webhook",), "firing")]
    assert store.claim_unsent(NOW + timedelta(seconds=62)) == []  # under its new lease
    assert store.list(unsent_only=True)[0].id == d.record.id


def test_clear_sends_resolution_only_after_somebody_was_told(ops: OpsDb):
    store = AlertStore(ops.sessions)
    a, b = alert(), alert(check="volume")
    assert store.clear(*a.key, NOW, resolve_rule, ["webhook"]) is None  # never raised
    d = store.raise_alert(facts_of(a), NOW, raise_rule(a, NOW), ["webhook"])
    store.mark_sent(d.record.id, d.seq, NOW, delivered=["webhook"], sent_severity="warning", sent_figure=10)
    cleared = store.clear(*a.key, NOW + timedelta(hours=1), resolve_rule, ["webhook"])
    assert cleared.send and cleared.kind == "resolved" and cleared.seq == 2 and cleared.record.status == "resolved"
    assert not store.clear(*a.key, NOW + timedelta(hours=2), resolve_rule, ["webhook"]).send
    store.raise_alert(facts_of(b), NOW, raise_rule(b, NOW), ["webhook"])  # claimed, never delivered
    dropped = store.clear(*b.key, NOW + timedelta(hours=1), resolve_rule, ["webhook"])
    assert not dropped.send and dropped.reason == "never_told" and dropped.record.pending_kind is None
    # A reopened alert is a new episode: counts and what was sent start again.
    later = NOW + timedelta(hours=3)
    again = store.raise_alert(facts_of(a), later, raise_rule(a, later), ["webhook"])
    assert again.reason == "reopened" and again.record.raised_count == 1 and again.record.last_sent_at is None
    assert again.record.opened_at == later and again.seq == 3


def test_list_is_newest_first_with_filters(ops: OpsDb):
    store = AlertStore(ops.sessions)
    for i, check in enumerate(["a", "b", "c"]):
        a = alert(check=check)
        at = NOW + timedelta(minutes=i)
        store.raise_alert(facts_of(a), at, raise_rule(a, at), [])
    store.clear(*alert(check="b").key, NOW + timedelta(minutes=10), resolve_rule, [])
    assert [r.condition.split(":")[1] for r in store.list()] == ["b", "c", "a"]
    assert [r.condition.split(":")[1] for r in store.list(open_only=True)] == ["c", "a"]
    assert [r.condition.split(":")[1] for r in store.list(since=NOW + timedelta(minutes=2))] == ["b", "c"]
    assert len(store.list(source="asset_check")) == 3 and store.list(source="run_failure") == []
    assert len(store.list(limit=1)) == 1


def test_the_key_is_unique_in_the_database(ops: OpsDb, engine):
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("alerts")}
    assert ("source", "condition", "time_window") in uniques
    row = dict(source="asset_check", condition="x:y", time_window=DAY, severity="warning", summary="s",
               opened_at=NOW, last_seen_at=NOW, updated_at=NOW, pending_channels=[])
    with ops.sessions.write() as s:
        s.add(AlertRow(**row))
    with pytest.raises(sqlalchemy.exc.IntegrityError), ops.sessions.write() as s:
        s.add(AlertRow(**row))
    with pytest.raises(sqlalchemy.exc.IntegrityError), ops.sessions.write() as s:
        s.add(AlertRow(**{**row, "time_window": "other", "severity": "loud"}))  # the CHECK constraint


def test_concurrent_raises_from_threads_send_once(ops: OpsDb, db_url):
    """Eight sensor ticks, each with its own engine (its own connections), raise the same new
    condition at the same moment: one insert wins, the others see its claimed notice."""
    engines = [create_engine_for(db_url) for _ in range(8)]
    barrier = threading.Barrier(len(engines))
    results, errors = [], []
    with WebhookReceiver() as hooks:
        def tick(engine):
            d = AlertDispatcher(AlertStore(OpsDb(engine).sessions), Notifier([WebhookChannel(hooks.url)]))
            try:
                barrier.wait()
                results.append(d.raise_(alert(), NOW))
            except BaseException as exc:  # noqa: BLE001 - asserted below
                errors.append(exc)

        threads = [threading.Thread(target=tick, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        try:
            assert errors == [] and len(results) == 8
            assert [r.sent for r in results].count(True) == 1
            # In flight (the winner still delivering) or unchanged (already delivered): never sent again.
            assert {r.reason for r in results if not r.sent} <= {"in_flight", "unchanged"}
            assert len(hooks.events) == 1
            assert [r.error for r in results] == [None] * 8
        finally:
            for e in engines:
                e.dispose()
    rows = AlertStore(ops.sessions).list()
    assert len(rows) == 1 and rows[0].raised_count == 8 and rows[0].notices == 1


RAISE_ON_GO = """
import json, sys
from datetime import UTC, datetime
from ai_assets.monitoring.alerts import asset_check_alert
from ai_assets.monitoring.notify import AlertDispatcher, Notifier, WebhookChannel
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.alerts import AlertStore
db = OpsDb.open(sys.argv[1], migrate=False)
d = AlertDispatcher(AlertStore(db.sessions), Notifier([WebhookChannel(sys.argv[2])]))
now = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
a = asset_check_alert("validated_messages", "no_empty_text", severity="WARN", description="10 empty texts",
                      partition="2025-03-03", now=now, figure=10, threshold=0)
print("ready", flush=True)
sys.stdin.readline()
r = d.raise_(a, now)
print(json.dumps({"sent": r.sent, "reason": r.reason}), flush=True)
"""


def test_concurrent_raises_from_processes_send_once(ops: OpsDb, db_url):
    with WebhookReceiver() as hooks:
        procs = [subprocess.Popen([sys.executable, "-c", RAISE_ON_GO, db_url, hooks.url], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:  # released together
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
        assert [o["sent"] for o in outcomes].count(True) == 1, outcomes
        assert len(hooks.events) == 1
