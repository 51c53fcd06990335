"""`ai-assets audit MESSAGE_ID` and `ai-assets outbox` against a real operations database
filled by a real run of the daily job."""

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ai_assets.ops_db import AuditEvent, OpsDb
from ai_assets_tests.defs.test_ingestion_assets import output

AI_ASSETS = str(Path(sys.executable).with_name("ai-assets"))
DAY = date(2025, 3, 3)


def cli(workspace, *args: str, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AI_ASSETS_OPS_DB_URL": workspace.ops_db_url, "AI_ASSETS_OUTBOX_DIR": str(workspace.outbox),
           **env}
    return subprocess.run([AI_ASSETS, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_audit_tells_one_messages_whole_story_without_pii(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=80, pii_rate=0.5)
    assert workspace.run(workspace.defs(), instance, DAY).success
    triaged = output(workspace, "triage_decisions", DAY)
    acted = triaged[triaged["decision"] == "act"].iloc[0]
    result = cli(workspace, "audit", acted["message_id"], "--json")
    assert result.returncode == 0, result.stderr
    story = json.loads(result.stdout)
    events = [e["event"] for e in story["audit"]]
    assert events[:3] == [AuditEvent.MODEL_CALL, AuditEvent.DECISION, AuditEvent.ACTION]
    assert events.count(AuditEvent.DELIVERY) == 2  # the e-mail and the case event
    assert {e["partition"] for e in story["audit"]} == {DAY.isoformat()}
    assert all(e["run_id"] for e in story["audit"])
    assert story["audit"][1]["policy_version"] and story["audit"][1]["model_version"] == "intent_model v1"
    assert [a["outcome"] for a in story["actions"]] == ["acted"]
    assert [(o["kind"], o["status"]) for o in story["outbox"]] == [("email", "delivered"), ("webhook", "delivered")]
    assert story["cases"][0]["history"][-1]["message_id"] == acted["message_id"]
    text = cli(workspace, "audit", acted["message_id"])
    assert text.returncode == 0 and "decision" in text.stdout and "case " in text.stdout
    # No e-mail address (half the messages carried PII before masking) in any audit row.
    with OpsDb.open(workspace.ops_db_url) as db:
        entries = db.audit.entries()
    dump = json.dumps([[e.event, e.actor, e.detail] for e in entries], default=str)
    assert len({e.message_id for e in entries}) == len(triaged) and "@" not in dump


def test_audit_of_an_unknown_message_is_a_clear_error(workspace):
    result = cli(workspace, "audit", "no-such-message")
    assert result.returncode == 1 and "no audit record of message 'no-such-message'" in result.stderr


@pytest.mark.slow
def test_outbox_status_deliver_and_requeue(workspace, instance, smoke_model, tmp_path):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=30)
    down = workspace.action_settings(smtp_host="127.0.0.1", smtp_port=1, max_attempts=1, delivery_deadline_s=0.2)
    assert workspace.run(workspace.defs(actions=down), instance, DAY).success
    status = json.loads(cli(workspace, "outbox", "status").stdout)
    dead = status["dead"]
    assert dead and status["counts"]["dead"] == len(dead) and {d["kind"] for d in dead} == {"email"}
    # One unknown id among them: nothing is requeued, and the error names it.
    typo = cli(workspace, "outbox", "requeue", *(str(d["id"]) for d in dead), "999999")
    assert typo.returncode == 1 and "unknown outbox id(s): 999999; nothing requeued" in typo.stderr
    assert "Traceback" not in typo.stderr and typo.stdout == ""
    assert json.loads(cli(workspace, "outbox", "status").stdout)["counts"]["dead"] == len(dead)
    requeued = cli(workspace, "outbox", "requeue", *(str(d["id"]) for d in dead))
    assert requeued.stdout.count("requeued") == len(dead)
    delivered = cli(workspace, "outbox", "deliver", "--deadline", "5")  # default: the file sink
    assert json.loads(delivered.stdout)["delivered"] == len(dead), delivered.stderr
    assert json.loads(cli(workspace, "outbox", "status").stdout)["counts"]["dead"] == 0


def test_requeue_of_unknown_ids_fails_and_names_them(workspace):
    workspace.root.mkdir(parents=True)  # the command creates an empty operations database in it
    result = cli(workspace, "outbox", "requeue", "7", "3", "7")
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "Error: unknown outbox id(s): 3, 7; nothing requeued (`ai-assets outbox status` lists the dead letters)"]
