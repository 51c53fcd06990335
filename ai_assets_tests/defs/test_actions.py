"""Layer 3 in the daily job: triage_decisions -> case_actions -> outbox_deliveries, end to
end, with the outbox going to files, then to a real SMTP server and HTTP receiver."""

from datetime import date
from importlib import resources

import pytest
import yaml
from sqlalchemy import func

from ai_assets.actions.delivery import OutboxStore
from ai_assets.actions.routing_policy import load_policy
from ai_assets.defs.actions.checks import EVERY_DECISION_ACTED_ONCE, NO_DEAD_LETTERS
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.tables import Action, Case, OutboxMessage, ReviewItem
from ai_assets.schemas import ACTION_COLUMNS, TRIAGE_COLUMNS
from ai_assets_tests.defs.test_ingestion_assets import checks_by_name, latest_metadata, output
from ai_assets_tests.doubles import SmtpReceiver, WebhookReceiver

# Each test runs the daily job end to end (ingestion to delivery) through Dagster.
pytestmark = pytest.mark.slow

DAY = date(2025, 3, 3)


def table_counts(workspace) -> dict[str, int]:
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.read() as s:
        return {m.__tablename__: s.query(m).count() for m in (Action, Case, OutboxMessage)}


def db_audit(workspace, event: str) -> list:
    with OpsDb.open(workspace.ops_db_url) as db:
        return db.audit.entries(event=event)


def test_the_daily_job_decides_acts_and_delivers_every_message_once(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=200)
    result = workspace.run(workspace.defs(), instance, DAY)
    assert result.success
    enriched = output(workspace, "enriched_messages", DAY)
    triaged, acted = output(workspace, "triage_decisions", DAY), output(workspace, "case_actions", DAY)
    assert list(triaged.columns) == list(TRIAGE_COLUMNS) and list(acted.columns) == list(ACTION_COLUMNS)
    assert list(triaged["message_id"]) == list(enriched["message_id"]) == list(acted["message_id"])
    # Only automated messages are acted on; everything else is in review.
    assert set(triaged.loc[~enriched["automated"], "decision"]) <= {"review"}
    meta = latest_metadata(instance, "case_actions", DAY)
    assert meta["acted"] + meta["review"] + meta["conflict"] + meta["already_done"] == meta["rows_in"] == 200
    assert meta["acted"] > 0 and meta["review"] > 0 and meta["already_done"] == 0
    checks = checks_by_name(result)
    assert checks[EVERY_DECISION_ACTED_ONCE].passed and checks[NO_DEAD_LETTERS].passed
    # Every acted message wrote one e-mail and one event, delivered as one file each.
    delivered = latest_metadata(instance, "outbox_deliveries", DAY)
    assert delivered["delivered"] == 2 * meta["acted"] and delivered["pending"] == delivered["dead"] == 0
    assert len(list((workspace.outbox / "mail").glob("*.eml"))) == meta["acted"]
    assert len(list((workspace.outbox / "events").glob("*.json"))) == meta["acted"]
    # Every message sent to a person carries what the model offered and when it is due.
    policy = load_policy()
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.read() as s:
        items = list(s.query(ReviewItem))
    assert len(items) == meta["review"]
    local = [i for i in items if i.suggestions]
    assert len(local) >= 0.9 * len(items)  # all but the messages no local answer reached
    for item in local:
        scores = [score for _, score in item.suggestions]
        assert len(item.suggestions) == 5 and scores == sorted(scores, reverse=True) and 0 <= scores[-1]
        assert item.model_version is not None
    for item in items:
        assert item.due_at == item.created_at + policy.review_due_after(item.priority)
        assert item.review_queue == "standard" and item.status == "open"


def test_rerunning_the_partition_acts_on_nothing_twice(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=150)
    defs = workspace.defs()
    assert workspace.run(defs, instance, DAY).success
    before = table_counts(workspace)
    mail_files = sorted(p.name for p in (workspace.outbox / "mail").glob("*.eml"))
    assert workspace.run(defs, instance, DAY).success
    meta = latest_metadata(instance, "case_actions", DAY)
    assert meta["already_done"] == 150 and meta["acted"] == meta["review"] == 0
    assert table_counts(workspace) == before
    assert sorted(p.name for p in (workspace.outbox / "mail").glob("*.eml")) == mail_files
    assert latest_metadata(instance, "outbox_deliveries", DAY)["attempted"] == 0


def test_outbox_goes_over_real_smtp_and_webhooks_and_survives_the_server_being_down(workspace, instance,
                                                                                      smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=60)
    with SmtpReceiver() as smtp, WebhookReceiver() as hooks:
        # The default 8 attempts; backoff short enough for a test, but no row can use up its
        # attempts within the daily step's 3 s (attempts at 0, 1 and 3 s at most: 3 of 8); the
        # 3 s leave the webhook events time to go out on a loaded machine (0.5 s did not, at
        # load average 10). The sweep waits up to 5 s for what is due.
        settings = dict(smtp_host="127.0.0.1", smtp_port=smtp.port, webhook_url=hooks.url,
                        webhook_secret="hook-secret", base_backoff_s=1.0, max_backoff_s=2.0)
        defs = workspace.defs(actions=workspace.action_settings(**settings, delivery_deadline_s=3.0))
        smtp.stop()  # the mail server is down for the daily run
        result = workspace.run(defs, instance, DAY)
        assert result.success
        acted = latest_metadata(instance, "case_actions", DAY)["acted"]
        down = latest_metadata(instance, "outbox_deliveries", DAY)
        assert down["pending"] == acted and down["dead"] == 0  # the e-mails wait; events went out
        assert len(hooks.requests) == acted and not smtp.messages
        smtp.start()  # back on the same port: the scheduled sweep delivers, nobody re-runs the day
        sweep_defs = workspace.defs(actions=workspace.action_settings(**settings, delivery_deadline_s=5.0))
        sweep = workspace.run(sweep_defs, instance, None, job="outbox_retry_job")
        assert sweep.success
        with OpsDb.open(workspace.ops_db_url) as db:
            assert OutboxStore(db.sessions).counts()["pending"] == 0
        assert len(smtp.message_ids()) == acted and not smtp.duplicates() and not hooks.duplicates()
        assert len(hooks.requests) == acted  # nothing sent twice by the sweep


def test_a_receiver_that_never_comes_back_gives_dead_letters_and_a_failed_check(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=40)
    with SmtpReceiver() as smtp:
        smtp.stop()
        # Time enough on a loaded machine for both attempts of every e-mail (2 s was not: 2 of 5
        # dead); the step ends as soon as every row is delivered or dead.
        actions = workspace.action_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, max_attempts=2,
                                            base_backoff_s=0.01, max_backoff_s=0.02, delivery_deadline_s=10.0)
        result = workspace.run(workspace.defs(actions=actions), instance, DAY)
    acted = latest_metadata(instance, "case_actions", DAY)["acted"]
    assert acted > 0
    meta = latest_metadata(instance, "outbox_deliveries", DAY)
    assert meta["dead"] == acted  # every e-mail; the file-sink events were delivered
    check = checks_by_name(result)[NO_DEAD_LETTERS]
    assert not check.passed and check.metadata["dead_letters"].value == acted
    assert result.success  # the alert is the failed check; the rest of the day is not held back


def test_a_policy_change_between_runs_acts_again_under_new_keys(workspace, instance, smoke_model, tmp_path):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=80)
    assert workspace.run(workspace.defs(), instance, DAY).success
    first = latest_metadata(instance, "case_actions", DAY)["acted"]
    document = yaml.safe_load(resources.files("ai_assets.actions").joinpath("routing_policy.yaml").read_text())
    document["version"] = "routing-test-2"
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(document))
    assert workspace.run(workspace.defs(actions=workspace.action_settings(routing_policy_path=str(path))),
                         instance, DAY).success
    meta = latest_metadata(instance, "case_actions", DAY)
    assert meta["acted"] == first and meta["already_done"] == 0
    with OpsDb.open(workspace.ops_db_url) as db, db.sessions.read() as s:
        per_version = dict(s.query(Action.policy_version, func.count()).group_by(Action.policy_version).all())
        emails = s.query(OutboxMessage).filter(OutboxMessage.kind == "email").count()
    assert per_version == {load_policy().version: 80, "routing-test-2": 80}  # old actions untouched
    assert emails == first  # the customer is not written to twice
    assert len(db_audit(workspace, "policy_change")) == 80
