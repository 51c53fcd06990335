"""Integration: failed checks become alerts a person receives once. Real runs, the real check
and run-failure sensors evaluated as the daemon does, a real webhook receiver and SMTP server on
loopback; counts of what arrived are the assertions."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from dagster import build_sensor_context

from ai_assets.defs.monitoring.sensors import check_alert_sensor
from ai_assets.ingestion.resolved_cases import resolved_file_path
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.alerts import AlertStore
from ai_assets.ops_db.usage import UsageEntry
from ai_assets.resources import MonitoringSettings, NotifierResource, OpsDatabaseResource
from ai_assets_tests.doubles.receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.slow
MONDAY = date(2025, 3, 3)
PK = MONDAY.isoformat()


@pytest.fixture
def hooks():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp():
    with SmtpReceiver() as receiver:
        yield receiver


def notifier(hooks: WebhookReceiver, smtp: SmtpReceiver) -> NotifierResource:
    return NotifierResource(webhook_url=hooks.url, email_to="oncall@bank.example", smtp_host="127.0.0.1",
                            smtp_port=smtp.port, ui_url="http://dagster.internal:3000")


def tick(workspace, instance, hooks, smtp, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=workspace.defs(), resources={
        "notifier": notifier(hooks, smtp), "ops_database": OpsDatabaseResource(url=workspace.ops_db_url)})
    check_alert_sensor.evaluate_tick(context)
    return context.cursor


def texts(hooks: WebhookReceiver) -> list[str]:
    return [request.json["text"] for request in hooks.requests]


def failed_checks(result) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


def corrupt_labels(workspace, share: float) -> None:
    """An agent tool that went wrong: `share` of the day's labels replaced by another intent."""
    path = resolved_file_path(workspace.landing, MONDAY)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    categories = sorted({r["category"] for r in rows})
    step = round(1 / share)
    for i, row in enumerate(rows):
        if i % step == 0:
            row["category"] = categories[(categories.index(row["category"]) + 1) % len(categories)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_label_errors_fail_the_accuracy_check_and_alert_exactly_once(workspace, instance, smoke_model, hooks, smtp):
    workspace.install_model(smoke_model)
    workspace.simulate(MONDAY, per_day=300)
    defs = workspace.defs()
    assert workspace.run(defs, instance, MONDAY).success
    cursor = tick(workspace, instance, hooks, smtp)
    baseline = len(hooks.requests)  # the smoke model's own failures of the day, if any

    corrupt_labels(workspace, share=0.5)
    labels = workspace.run(defs, instance, MONDAY, job="label_feedback_job")
    failed = failed_checks(labels)
    assert "accuracy_within_margin_of_validation" in failed
    cursor = tick(workspace, instance, hooks, smtp, cursor)
    new = texts(hooks)[baseline:]
    accuracy_alerts = [t for t in new if "accuracy_within_margin_of_validation" in t]
    assert len(accuracy_alerts) == 1 and PK in accuracy_alerts[0]
    assert len(new) == len(failed)  # one per failed check, none twice
    assert len(smtp.messages) == len(hooks.requests)

    # The same broken day again, and more ticks: nothing new is sent.
    workspace.run(defs, instance, MONDAY, job="label_feedback_job")
    cursor = tick(workspace, instance, hooks, smtp, cursor)
    cursor = tick(workspace, instance, hooks, smtp, cursor)
    assert len(hooks.requests) == baseline + len(failed)

    with OpsDb.open(workspace.ops_db_url) as db:
        rows = AlertStore(db.sessions).list(open_only=True)
    assert any(r.condition == "model_quality:accuracy_within_margin_of_validation" and r.window == PK
               for r in rows)


def test_a_budget_crossing_sends_one_alert(workspace, instance, smoke_model, hooks, smtp):
    workspace.install_model(smoke_model)
    workspace.simulate(MONDAY, per_day=60)
    with OpsDb.open(workspace.ops_db_url) as db:  # the day's LLM spend, as the Claude tiers record it
        db.usage.record_many([UsageEntry(tier="claude", model="claude-haiku-4-5", input_tokens=1000, output_tokens=100,
                                         cost_usd=Decimal("17.50"), partition=PK,
                                         at=datetime(2025, 3, 3, 12, tzinfo=UTC))])
    defs = workspace.defs(monitoring=MonitoringSettings(daily_budget_usd=20.0))
    first = workspace.run(defs, instance, MONDAY)
    assert "within_llm_budget" in failed_checks(first)
    cursor = tick(workspace, instance, hooks, smtp)
    workspace.run(defs, instance, MONDAY)  # a re-run of the day: the same crossing
    tick(workspace, instance, hooks, smtp, cursor)
    budget = [t for t in texts(hooks) if "within_llm_budget" in t]
    assert len(budget) == 1 and "88%" in budget[0] and PK in budget[0]


def test_dead_letters_send_one_alert(workspace, instance, smoke_model, hooks, smtp):
    workspace.install_model(smoke_model)
    workspace.simulate(MONDAY, per_day=40)
    with SmtpReceiver() as customers:
        customers.stop()  # the customers' mail server never comes back
        actions = workspace.action_settings(smtp_host="127.0.0.1", smtp_port=customers.port, max_attempts=2,
                                            base_backoff_s=0.01, max_backoff_s=0.02, delivery_deadline_s=2.0)
        defs = workspace.defs(actions=actions)
        result = workspace.run(defs, instance, MONDAY)
    assert "no_dead_letters" in failed_checks(result)
    cursor = tick(workspace, instance, hooks, smtp)
    tick(workspace, instance, hooks, smtp, cursor)
    dead = [t for t in texts(hooks) if "no_dead_letters" in t]
    assert len(dead) == 1 and "outbox_deliveries" in dead[0]
    assert len(smtp.messages) == len(hooks.requests)


def test_a_failed_run_sends_one_alert_per_job_and_partition(workspace, instance, hooks, smtp):
    """The label run of a day that was never ingested fails (no messages to judge against): the
    run-failure sensor, evaluated as the daemon does, sends one notice linked to the run; a
    second failure of the same job and day sends nothing more."""
    from dagster import build_run_status_sensor_context

    from ai_assets.defs.monitoring.sensors import run_failure_alert_sensor

    defs = workspace.defs()
    resources = {"notifier": notifier(hooks, smtp), "ops_database": OpsDatabaseResource(url=workspace.ops_db_url)}
    run_ids = []
    for _ in range(2):
        failed = workspace.run(defs, instance, MONDAY, job="label_feedback_job")
        run_ids.append(failed.run_id)
        assert not failed.success
        run = instance.get_run_by_id(failed.run_id)
        failure = next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = build_run_status_sensor_context(sensor_name=run_failure_alert_sensor.name, dagster_event=failure,
                                                  dagster_instance=instance, dagster_run=run,
                                                  resources=resources).for_run_failure()
        run_failure_alert_sensor(context)
    (notice,) = texts(hooks)
    assert "label_feedback_job" in notice and PK in notice and f"/runs/{run_ids[0]}" in notice
    assert len(smtp.messages) == 1
