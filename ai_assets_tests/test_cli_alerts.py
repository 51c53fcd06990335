"""`ai-assets alerts [--json] [--open] [--since] [--source] [--unsent]` against a real operations
database filled by the real dispatcher. The command is invoked directly (the lead registers it
on the `ai-assets` group)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ai_assets.cli.alerts import alerts
from ai_assets.monitoring.alerts import asset_check_alert, run_failure_alert
from ai_assets.monitoring.notify import AlertDispatcher, Notifier
from ai_assets.ops_db import OpsDb
from ai_assets.ops_db.alerts import AlertStore

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
BUDGET = "cost_report:within_llm_budget"
DEAD = "outbox_deliveries:no_dead_letters"


@pytest.fixture
def ops_db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with OpsDb.open(url) as db:
        d = AlertDispatcher(AlertStore(db.sessions), Notifier())
        check = asset_check_alert("validated_messages", "no_empty_text", severity="WARN",
                                  description="quoted: \x1b[2J<!channel>\r\nforged line", partition="2025-03-03",
                                  now=NOW, figure=12, threshold=0)
        d.raise_(check, NOW)
        d.raise_(check, NOW + timedelta(minutes=1))
        d.raise_(run_failure_alert("daily_pipeline", "abc-123", message="boom", partition="2025-03-03", now=NOW),
                 NOW + timedelta(minutes=20))
        d.raise_(asset_check_alert("cost_report", "within_llm_budget", severity="ERROR",
                                   description="LLM spend at 105% of the daily budget", partition="2025-03-03",
                                   now=NOW, figure=1.05, threshold=0.8), NOW + timedelta(hours=1))
        dead = asset_check_alert("outbox_deliveries", "no_dead_letters", severity="ERROR",
                                 description="3 outbox messages are dead letters", partition="2025-03-02", now=NOW,
                                 figure=3, threshold=0)
        d.raise_(dead, NOW + timedelta(hours=2))
        d.resolve(*dead.key, now=NOW + timedelta(hours=3))
    return url


def run(url: str, *args: str):
    result = CliRunner().invoke(alerts, list(args), env={"AI_ASSETS_OPS_DB_URL": url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def conditions(url: str, *args: str) -> list[str]:
    return [r["condition"] for r in json.loads(run(url, "--json", *args))]


def test_json_lists_newest_first(ops_db_url):
    rows = json.loads(run(ops_db_url, "--json"))
    assert [(r["source"], r["condition"], r["status"]) for r in rows] == [
        ("asset_check", DEAD, "resolved"), ("asset_check", BUDGET, "open"), ("run_failure", "daily_pipeline", "open"),
        ("asset_check", "validated_messages:no_empty_text", "open")]
    check = rows[-1]
    assert check["condition"] == "validated_messages:no_empty_text" and check["window"] == "2025-03-03"
    assert check["severity"] == "warning" and check["figure"] == 12 and check["raised_count"] == 2
    assert check["link"] == "/assets/validated_messages?partition=2025-03-03"
    assert check["last_sent_at"] == NOW.isoformat() and check["pending_channels"] == []
    assert rows[1]["severity"] == "error" and rows[1]["figure"] == 1.05 and rows[1]["threshold"] == 0.8
    assert rows[0]["window"] == "2025-03-02" and rows[0]["figure"] == 3


def test_filters(ops_db_url):
    assert conditions(ops_db_url, "--open") == [BUDGET, "daily_pipeline", "validated_messages:no_empty_text"]
    assert conditions(ops_db_url, "--since", "2025-03-03T12:30:00") == [DEAD, BUDGET]
    assert conditions(ops_db_url, "--source", "run_failure") == ["daily_pipeline"]
    assert conditions(ops_db_url, "--source", "asset_check") == [DEAD, BUDGET, "validated_messages:no_empty_text"]
    assert conditions(ops_db_url, "--source", "budget") == []  # not a source: budget crossings are checks
    assert json.loads(run(ops_db_url, "--json", "--unsent")) == []
    assert len(json.loads(run(ops_db_url, "--json", "--limit", "1"))) == 1


def test_text_output_is_one_line_per_field_and_escapes_untrusted_text(ops_db_url):
    out = run(ops_db_url)
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["2025-03-03", "15:00", "resolved", "error", f"asset_check/{DEAD}"]
    assert "asset_check/validated_messages:no_empty_text [2025-03-03] figure=12 threshold=0 x2" in out
    assert "\x1b" not in out and "\r" not in out and "forged line" in out
    assert not any(line.startswith("forged") for line in lines)  # the summary could not start a line


def test_an_empty_database_says_so(tmp_path):
    assert run(f"sqlite:///{tmp_path / 'empty.db'}").strip() == "no alerts"
    assert json.loads(run(f"sqlite:///{tmp_path / 'empty.db'}", "--json")) == []
