"""The alert rules and renderings, pure: when a person hears about a condition, and what they read."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from ai_assets.monitoring.alerts import (
    Alert,
    AlertState,
    AlertStatus,
    Notice,
    NoticeKind,
    Severity,
    Source,
    asset_check_alert,
    asset_path,
    clean_text,
    decide,
    decide_resolved,
    email_message,
    figure_worse,
    link_url,
    log_line,
    run_failure_alert,
    run_path,
    slack_body,
)
from ai_assets.ops_db import tables

NOW = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)
UI = "http://dagster.example:3000"
HOSTILE = ("3 nulls\r\nBcc: evil@attacker.example\r\n\r\n<!channel> <@U0123> <!here|here> @everyone "
           "<https://evil.example|click me> & \u2028forged log line\x1b[31m")


def alert(severity: Severity = Severity.WARNING, figure: float | None = 10.0, threshold: float | None = 0.0,
          higher_is_worse: bool = True, summary: str = "ten nulls") -> Alert:
    return Alert("asset_check", "validated_messages:no_nulls", "2025-03-03", severity, summary, figure, threshold,
                 higher_is_worse, "2025-03-03", asset_path("validated_messages", "2025-03-03"))


def told(severity: Severity = Severity.WARNING, figure: float | None = 10.0, at: datetime = NOW) -> AlertState:
    """An open alert somebody was told about at `at`."""
    return AlertState(AlertStatus.OPEN, severity, figure, sent_severity=severity, sent_figure=figure, last_sent_at=at)


def test_severity_is_ordered_and_parses_dagster_names():
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert Severity.parse("WARN") is Severity.WARNING and Severity.parse("error") is Severity.ERROR
    assert Severity.parse(Severity.CRITICAL) is Severity.CRITICAL
    # The table's CHECK constraints agree with the vocabulary (ops_db cannot import monitoring).
    assert [s.label for s in Severity] == [s.value for s in tables.AlertSeverity]
    assert {s.value for s in AlertStatus} == {s.value for s in tables.AlertStatus}
    assert {k.value for k in NoticeKind} == {k.value for k in tables.AlertNoticeKind}
    with pytest.raises(ValueError, match="unknown severity"):
        Severity.parse("loud")


def test_a_new_condition_sends_and_an_unchanged_one_is_suppressed_until_the_cooldown():
    assert decide(None, alert(), NOW).reason == "new"
    assert decide(told(), alert(), NOW + timedelta(hours=1), DAY).action == "suppress"
    assert decide(told(), alert(), NOW + timedelta(hours=1), DAY).reason == "unchanged"
    assert decide(told(), alert(), NOW + DAY, DAY).reason == "cooldown"
    assert decide(told(), alert(), NOW + timedelta(hours=2), timedelta(hours=2)).send


def test_worse_severity_repeats_at_once_a_better_one_does_not():
    assert decide(told(Severity.WARNING), alert(Severity.ERROR), NOW + timedelta(minutes=1)).reason == "worse_severity"
    assert not decide(told(Severity.ERROR), alert(Severity.WARNING), NOW + timedelta(minutes=1)).send


def test_worse_figure_must_beat_the_margin_in_the_worse_direction():
    later = NOW + timedelta(minutes=5)
    # Excess over the threshold 0 was 10: +5 (half) is not enough, +6 is.
    assert not decide(told(figure=10), alert(figure=15), later).send
    assert decide(told(figure=10), alert(figure=16), later).reason == "worse_figure"
    assert not decide(told(figure=10), alert(figure=3), later).send  # better is not news
    # Accuracy: lower is worse, measured from the threshold: 0.80 against 0.85 repeats below 0.775.
    assert not figure_worse(0.80, 0.78, 0.85, higher_is_worse=False)
    assert figure_worse(0.80, 0.77, 0.85, higher_is_worse=False)
    assert not figure_worse(0.80, 0.90, 0.85, higher_is_worse=False)
    # 100 dead letters do not repeat at 101; no threshold: relative to the figure itself.
    assert not figure_worse(100, 101, 0, True)
    assert figure_worse(4, 6.5, None, True) and not figure_worse(4, 5.5, None, True)
    assert not figure_worse(None, 5, 0, True) and not figure_worse(5, None, 0, True)
    assert figure_worse(0.2, 0.25, 0.2, True)  # exactly at the threshold before: any step is worse


def test_a_notice_in_flight_is_not_sent_twice_and_an_unsent_one_is_retried_when_due():
    claimed = AlertState(AlertStatus.OPEN, Severity.WARNING, 10, pending=NoticeKind.FIRING,
                         retry_at=NOW + timedelta(minutes=2))
    assert decide(claimed, alert(), NOW).reason == "in_flight"
    assert decide(claimed, alert(), NOW + timedelta(minutes=2)).reason == "unsent"
    # Worse while a notice is owed: a new notice at once.
    assert decide(claimed, alert(Severity.CRITICAL), NOW).reason == "in_flight"  # nobody told yet: nothing to beat
    partly = AlertState(AlertStatus.OPEN, Severity.WARNING, 10, Severity.WARNING, 10, NOW, NoticeKind.FIRING,
                        NOW + timedelta(minutes=2))
    assert decide(partly, alert(Severity.CRITICAL), NOW).reason == "worse_severity"


def test_a_resolved_condition_reopens_and_resolution_is_sent_only_if_somebody_was_told():
    resolved = AlertState(AlertStatus.RESOLVED, Severity.WARNING, 10, Severity.WARNING, 10, NOW)
    assert decide(resolved, alert(), NOW + timedelta(minutes=1)).reason == "reopened"
    assert decide_resolved(told()).reason == "resolved" and decide_resolved(told()).send
    assert decide_resolved(None).reason == "not_open"
    assert decide_resolved(resolved).reason == "not_open"
    never = AlertState(AlertStatus.OPEN, Severity.WARNING, 10, pending=NoticeKind.FIRING, retry_at=NOW)
    assert decide_resolved(never).reason == "never_told"


def test_decide_refuses_naive_times():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(None, alert(), datetime(2025, 3, 3))


def test_condition_keys_are_stable_per_source():
    check = asset_check_alert("validated_messages", "no_nulls", severity="WARN", description="x",
                              partition="2025-03-03", now=NOW)
    assert check.key == ("asset_check", "validated_messages:no_nulls", "2025-03-03")
    assert check.severity is Severity.WARNING and check.link == "/assets/validated_messages?partition=2025-03-03"
    unpartitioned = asset_check_alert("intent_model", "gate", severity="ERROR", description="x", partition=None,
                                      now=NOW)
    assert unpartitioned.window == "2025-03-03"  # the UTC day
    run = run_failure_alert("daily_pipeline", "abc-123", message="boom", partition="2025-03-03", now=NOW)
    assert run.key == ("run_failure", "daily_pipeline", "2025-03-03") and run.link == "/runs/abc-123"
    # Budget crossings, dead letters, drift, accuracy drops and freshness arrive as failed checks.
    warn = asset_check_alert("cost_report", "within_llm_budget", severity="WARN", partition="2025-03-03", now=NOW,
                             description="LLM spend at 85% of the daily budget", figure=0.85, threshold=0.8)
    stop = asset_check_alert("cost_report", "within_llm_budget", severity="ERROR", partition="2025-03-03", now=NOW,
                             description="LLM spend at 105% of the daily budget", figure=1.05, threshold=0.8)
    assert warn.key == stop.key == ("asset_check", "cost_report:within_llm_budget", "2025-03-03")
    assert (warn.severity, warn.threshold, stop.severity, stop.threshold) == (Severity.WARNING, 0.8, Severity.ERROR, 0.8)
    assert decide(told(Severity.WARNING, 0.85), stop, NOW).reason == "worse_severity"  # warned, then stopped: told again
    dead = asset_check_alert("outbox_deliveries", "no_dead_letters", severity="ERROR",
                             description="3 outbox messages are dead letters", partition=None, now=NOW, figure=3,
                             threshold=0)
    assert dead.key == ("asset_check", "outbox_deliveries:no_dead_letters", "2025-03-03")  # the UTC day
    assert dead.severity is Severity.ERROR and dead.link == "/assets/outbox_deliveries"
    drift = asset_check_alert("input_drift", "input_drift_vs_training", severity="WARN", description="psi 0.31 > 0.2",
                              partition="2025-03-03", now=NOW, figure=0.31, threshold=0.2)
    assert drift.key == ("asset_check", "input_drift:input_drift_vs_training", "2025-03-03") and drift.higher_is_worse
    acc = asset_check_alert("model_quality", "accuracy_within_margin_of_validation", severity="WARN",
                            description="accuracy 0.700 < 0.850", partition="2025-03-03", now=NOW, figure=0.7,
                            threshold=0.85, higher_is_worse=False)
    assert acc.key == ("asset_check", "model_quality:accuracy_within_margin_of_validation", "2025-03-03")
    assert not acc.higher_is_worse and acc.link == "/assets/model_quality?partition=2025-03-03"
    # Lower accuracy is worse: 0.70 against 0.85 repeats below 0.625, and a better figure is not news.
    assert decide(told(figure=0.7), dataclasses.replace(acc, figure=0.62), NOW).reason == "worse_figure"
    assert decide(told(figure=0.7), dataclasses.replace(acc, figure=0.64), NOW).reason == "unchanged"
    assert decide(told(figure=0.7), dataclasses.replace(acc, figure=0.9), NOW).reason == "unchanged"
    fresh = asset_check_alert("raw_messages", "freshness_check", severity="WARN",
                              description="last updated 30.0 h ago (limit 26.0 h)", partition=None, now=NOW,
                              figure=30, threshold=26)
    assert fresh.key == ("asset_check", "raw_messages:freshness_check", "2025-03-03") and fresh.higher_is_worse
    assert {s.value for s in Source} == {"asset_check", "run_failure", "review_overdue"}
    # Layer 5's overdue review items are raised by the escalation (ai_assets_tests/review/test_escalation.py).
    assert {a.source for a in (check, run, warn, stop, dead, drift, acc, fresh)} == \
        {s.value for s in Source} - {"review_overdue"}


def test_alerts_validate_their_parts():
    with pytest.raises(ValueError, match="finite"):
        alert(figure=float("nan"))
    with pytest.raises(ValueError, match="longer than"):
        Alert("asset_check", "x" * 201, "2025-03-03", Severity.INFO, "s")
    with pytest.raises(ValueError, match="empty"):
        Alert("asset_check", "  ", "2025-03-03", Severity.INFO, "s")
    odd = Alert("asset_check", "a b\nc", "2025-03-03", "warning", "s" * 2000)
    assert odd.condition == "a_b_c" and len(odd.summary) == 500 and odd.summary.endswith("…")


def test_links_are_quoted_and_only_ui_paths_or_http_urls_are_rendered():
    assert asset_path(["ai", "raw messages"], "2025-03-03") == "/assets/ai/raw%20messages?partition=2025-03-03"
    assert run_path("a/b") == "/runs/a%2Fb"
    assert link_url(UI + "/", "/runs/x") == UI + "/runs/x"
    assert link_url(UI, "https://other.example/x") == "https://other.example/x"
    for bad in ("javascript:alert(1)", "//evil.example/x", "runs/x", None, ""):
        assert link_url(UI, bad) is None


def notice(summary: str = HOSTILE, kind: NoticeKind = NoticeKind.FIRING) -> Notice:
    return Notice(kind, alert(Severity.ERROR, summary=summary), "new", "alert-7-1", NOW, NOW, 3)


def test_renderings_carry_severity_figure_partition_and_link():
    n = notice("ten nulls in text")
    line = log_line(n, UI)
    assert line.startswith("[ERROR] asset_check validated_messages:no_nulls 2025-03-03")
    for part in ("severity=error", "figure=10", "threshold=0", "partition=2025-03-03", "key=alert-7-1",
                 f"link={UI}/assets/validated_messages?partition=2025-03-03"):
        assert part in line
    body = slack_body(n, UI)
    assert "ten nulls in text" in body["text"] and "10 (threshold 0, higher is worse)" in body["text"]
    assert body["blocks"][-1]["elements"][0]["url"] == f"{UI}/assets/validated_messages?partition=2025-03-03"
    subject, text = email_message(n, UI)
    assert subject == "[ERROR] asset_check validated_messages:no_nulls 2025-03-03: ten nulls in text"
    assert "partition: 2025-03-03" in text and "seen: 3 times" in text
    resolved = notice("ten nulls", NoticeKind.RESOLVED)
    assert log_line(resolved, UI).startswith("[RESOLVED]") and email_message(resolved, UI)[0].startswith("[RESOLVED]")
    assert "cleared" in slack_body(resolved, UI)["text"]


def test_hostile_text_cannot_break_a_header_a_log_line_or_mention_anyone():
    n = notice()
    subject, body = email_message(n, UI)
    assert "\r" not in subject and "\n" not in subject and len(subject) <= 200
    assert "\x1b" not in body and "\u2028" not in body and "\nBcc:" not in body
    line = log_line(n, UI)
    assert "\n" not in line and "\r" not in line and "\u2028" not in line and len(line) <= 1000
    slack = slack_body(n, UI)
    dumped = json.dumps(slack, ensure_ascii=False)
    for mention in ("<!channel>", "<@U0123>", "<!here", "<https://evil.example"):
        assert mention not in dumped
    assert "&lt;!channel&gt;" in slack["text"] and "&amp;" in slack["text"]
    assert "@everyone" not in slack["text"] and "@\u2060everyone" in slack["text"]
    # The summary block is plain text: Slack never parses it for mentions or links.
    assert slack["blocks"][1]["text"]["type"] == "plain_text"
    assert len(slack["text"]) <= 3000


def test_clean_text_caps_and_flattens():
    assert clean_text("a\r\n\tb\x00c\u202e", 100) == "a b c"
    assert clean_text("x" * 10, 5) == "xxxx…"
