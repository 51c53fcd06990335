"""The model-serving resource wired to the operations database and the loopback API."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from dagster import EnvVar

from ai_assets.data.datasets import load_categories, split_banking77
from ai_assets.resources import model_serving_from_env
from ai_assets.resources.model_serving import ModelServing
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.serving.cascade import LOCAL
from ai_assets_tests.doubles import MessagesAPIServer
from ai_assets_tests.doubles.oracle import banking77_labels

LABELS = load_categories()
TEXTS = [r.text for r in split_banking77()["validation"][:12]]


def serving(server, **overrides) -> ModelServing:
    return ModelServing(anthropic_api_key="test-key", anthropic_base_url=server.base_url,
                        primary_model="claude-sonnet-4-5", secondary_model="claude-haiku-4-5", **overrides)


def test_without_an_api_key_no_llm_tier_exists(tmp_path):
    db = OpsDatabaseResource(url=f"sqlite:///{tmp_path / 'ops.db'}").db()
    cascade = ModelServing().cascade(None, 0.5, LABELS, db)
    assert cascade.claude_tiers == []


@pytest.mark.slow
def test_calls_are_recorded_cached_and_paid_once(tmp_path):
    db = OpsDatabaseResource(url=f"sqlite:///{tmp_path / 'ops.db'}").db()
    with MessagesAPIServer(banking77_labels()) as server:
        config = serving(server)
        for run in ("run-1", "run-2"):
            cascade = config.cascade(None, 1.01, LABELS, db, run_id=run, partition="2026-11-20")
            cascade.claude_tiers = cascade.claude_tiers[:1]  # the primary alone, for exact counts
            results = cascade.enrich(TEXTS, config.budget(db), config.deadline())
            assert all(r.answer.tier == "claude-sonnet-4-5" for r in results)
        assert server.stats().messages_requests == len(TEXTS)  # the second run paid for nothing
    first, second = db.usage.usage_summary("run-1"), db.usage.usage_summary("run-2")
    assert first.calls == len(TEXTS) and first.cost_usd > 0
    assert second.cache_hit_rate == 1.0 and second.cost_usd == 0


def test_daily_budget_counts_what_earlier_runs_spent(tmp_path):
    db = OpsDatabaseResource(url=f"sqlite:///{tmp_path / 'ops.db'}").db()
    db.usage.record(tier="claude-sonnet-4-5", model="claude-sonnet-4-5", cost_usd=Decimal("1.00"),
                    at=datetime.now(UTC) - timedelta(minutes=5))
    with MessagesAPIServer(banking77_labels()) as server:
        config = serving(server, daily_budget_usd=1.0)
        alerts = []
        results = config.cascade(None, 1.01, LABELS, db).enrich(
            TEXTS[:3], config.budget(db, on_alert=alerts.append), config.deadline())
        assert server.stats().messages_requests == 0
    assert all("budget_exhausted" in r.fallback_reason for r in results)
    assert all(r.answer.tier != LOCAL for r in results)  # no local model here: rules or a person
    assert alerts and alerts[0].level.value in ("warning", "exhausted")


@pytest.mark.slow
def test_an_evaluation_has_its_own_budget_and_leaves_live_traffic_s_day_alone(tmp_path):
    db = OpsDatabaseResource(url=f"sqlite:///{tmp_path / 'ops.db'}").db()
    db.usage.record(tier="claude-sonnet-4-5", model="claude-sonnet-4-5", cost_usd=Decimal("1.00"),
                    run_id="live-run", at=datetime.now(UTC) - timedelta(minutes=5))
    with MessagesAPIServer(banking77_labels()) as server:
        config = serving(server, daily_budget_usd=1.0)  # live traffic's day is spent
        evaluation = config.evaluation(db, budget_usd=10.0)
        records = evaluation.serve(TEXTS[:4])
        assert server.stats().messages_requests > 0  # not stopped by live traffic's daily budget
        nothing = config.evaluation(db, budget_usd=0.0).serve(TEXTS[4:6])  # its own budget binds it
        assert server.stats().messages_requests == 4  # the primary answered the first four; then none
    assert all(r["tier"] == "claude-sonnet-4-5" and r["cost_usd"] > 0 for r in records)
    assert all("budget_exhausted" in r["fallback_reason"] for r in nothing)
    evaluated = db.usage.spent_usd() - Decimal("1.00")
    assert evaluated > 0  # recorded, with its cost
    assert config.budget(db).daily_spent == Decimal("1.00")  # but not counted against live traffic


def test_the_api_key_and_base_url_are_env_var_references_in_dagster(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "secret-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://gateway.internal:8080")
    in_dagster = model_serving_from_env()
    # The stored configuration names the variables; the run resolves them.
    assert isinstance(in_dagster.anthropic_base_url, EnvVar) and in_dagster.anthropic_base_url == "ANTHROPIC_BASE_URL"
    assert isinstance(in_dagster.anthropic_api_key, EnvVar)
    resolved = in_dagster.process_config_and_initialize()
    assert (resolved.anthropic_api_key, resolved.anthropic_base_url) == ("secret-key", "http://gateway.internal:8080")
    cli = model_serving_from_env(in_dagster=False)  # the CLI uses the resource directly
    assert (cli.anthropic_api_key, cli.anthropic_base_url) == ("secret-key", "http://gateway.internal:8080")
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    assert model_serving_from_env().anthropic_base_url is None  # the SDK's default
