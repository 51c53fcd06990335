"""enriched_messages in the daily job: the production model from the registry, the cascade
to Claude (the real SDK against the loopback Messages API), cache, budget, batches, and the
blocking validation checks that keep a bad day away from the models."""

from datetime import UTC, date, datetime, timedelta

import pytest

from ai_assets.actions.routing_policy import load_policy
from ai_assets.data.datasets import load_categories
from ai_assets.ops_db import OpsDb
from ai_assets.resources import ModelServing
from ai_assets.schemas import ENRICHED_COLUMNS
from ai_assets_tests.defs.test_ingestion_assets import latest_metadata, output
from ai_assets_tests.doubles import MessagesAPIServer
from ai_assets_tests.doubles.oracle import banking77_labels

# Each test runs the daily job through enrichment in Dagster, most with the loopback Messages API.
pytestmark = pytest.mark.slow

DAY = date(2025, 3, 3)
PRIMARY = "claude-sonnet-4-5"


@pytest.fixture
def server():
    with MessagesAPIServer(banking77_labels()) as srv:
        yield srv


def llm(server, **overrides) -> ModelServing:
    # The day is old: without batch_partitions_older_than_days the run would use batches.
    return ModelServing(anthropic_api_key="test-key", anthropic_base_url=server.base_url,
                        batch_partitions_older_than_days=100_000, **overrides)


def test_without_a_model_every_message_still_gets_a_route(workspace, instance):
    workspace.simulate(DAY, per_day=120)
    assert workspace.run(workspace.defs(), instance, DAY).success
    enriched = output(workspace, "enriched_messages", DAY)
    assert set(enriched["tier"]) <= {"keyword_rules", "human"}
    assert not enriched["automated"].any() and enriched["review_reason"].notna().all()
    assert latest_metadata(instance, "enriched_messages", DAY)["local_model"] == "none"


def test_local_model_enriches_every_validated_message(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=300, faults="unparseable=0.02,duplicate_id=0.02")
    assert workspace.run(workspace.defs(), instance, DAY).success
    validated, enriched = output(workspace, "validated_messages", DAY), output(workspace, "enriched_messages", DAY)
    assert list(enriched.columns) == list(ENRICHED_COLUMNS)
    assert list(enriched["message_id"]) == list(validated["message_id"])  # one row each, in order
    threshold = smoke_model.candidate.model.threshold
    local = enriched[enriched["tier"] == "local"]
    assert len(local) == len(enriched) and set(enriched["local_model_version"]) == {"intent_model v1"}
    automated = local[local["automated"]]
    assert (automated["confidence"] >= threshold - 1e-6).all() and automated["review_reason"].isna().all()
    assert automated["intent"].isin(load_categories()).all()
    policy = load_policy()
    for row in enriched.itertuples():
        route = policy.route(row.intent)
        assert (row.queue, row.priority) == (route.queue, route.priority)
    assert (enriched["summary"].str.startswith("Customer needs help with: ")).all()
    assert (enriched["cost_usd"] == 0).all() and not enriched["cache_hit"].any()
    meta = latest_metadata(instance, "enriched_messages", DAY)
    assert meta["dagster/row_count"] == meta["rows_in"] == len(validated)
    assert meta["per_tier"] == {"local": len(enriched)}
    assert meta["automated"] == int(enriched["automated"].sum())
    assert sum(meta["review_reasons"].values()) == len(enriched) - meta["automated"]
    assert float(meta["cost_usd"]) == 0 and meta["latency_ms_p95"] >= meta["latency_ms_p50"] > 0


def test_unsure_messages_go_to_claude_and_a_rerun_pays_nothing(workspace, instance, smoke_model, server):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=80)
    defs = workspace.defs(serving=llm(server))
    assert workspace.run(defs, instance, DAY).success
    enriched = output(workspace, "enriched_messages", DAY)
    unsure = enriched["tier"] == PRIMARY
    calls = server.stats().messages_requests
    # The day repeats a few texts: a repeat answered after the first is a cache hit already.
    paid = unsure & ~enriched["cache_hit"]
    assert unsure.sum() > 0 and calls == paid.sum()
    assert (enriched.loc[paid, "cost_usd"] > 0).all() and (enriched.loc[paid, "input_tokens"] > 0).all()
    assert (enriched.loc[~unsure, "confidence"] >= smoke_model.candidate.model.threshold - 1e-6).all()
    meta = latest_metadata(instance, "enriched_messages", DAY)
    assert meta["llm_answers"] == unsure.sum() and meta["cache_hit_rate"] < 0.1 and float(meta["cost_usd"]) > 0

    assert workspace.run(defs, instance, DAY).success  # the same partition again
    assert server.stats().messages_requests == calls  # zero new calls
    again = output(workspace, "enriched_messages", DAY)
    assert again.loc[unsure, "cache_hit"].all() and (again.loc[unsure, "cost_usd"] == 0).all()
    assert list(again["intent"]) == list(enriched["intent"])
    assert latest_metadata(instance, "enriched_messages", DAY)["cache_hit_rate"] == 1.0


def test_run_budget_stops_paid_calls_and_alerts(workspace, instance, smoke_model, server):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=80)
    # About 15 calls' worth of the ~70 needed: the 80% warning, then the hard stop. One call at
    # a time, so no reservation in flight can report "exhausted" before the spend reaches 80%.
    serving = llm(server, run_budget_usd=0.05, max_concurrency=1)
    assert workspace.run(workspace.defs(serving=serving), instance, DAY).success
    enriched = output(workspace, "enriched_messages", DAY)
    paid = enriched["tier"] != "local"
    assert 0 < paid.sum() < (enriched["confidence"] < smoke_model.candidate.model.threshold).sum()
    assert enriched["cost_usd"].sum() <= 0.05
    # Once neither Claude model fits in what is left, the local answer stands (for review).
    reasons = enriched["fallback_reason"].fillna("")
    stopped = reasons.str.contains(f"{PRIMARY}: budget_exhausted") & \
        reasons.str.contains("claude-haiku-4-5: budget_exhausted")
    assert stopped.sum() > 10 and (enriched.loc[stopped, "tier"] == "local").all()
    alerts = latest_metadata(instance, "enriched_messages", DAY)["budget_alerts"]
    assert [a.split(":")[0] for a in alerts] == ["run model budget warning", "run model budget exhausted"]
    with OpsDb.open(workspace.ops_db_url) as db:
        spent = float(db.usage.spent_usd())
    assert spent == pytest.approx(enriched["cost_usd"].sum()) and spent <= 0.05


def test_old_partitions_go_through_the_batches_api(workspace, instance, smoke_model, server):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=60)
    serving = ModelServing(anthropic_api_key="test-key", anthropic_base_url=server.base_url,
                           batch_partitions_older_than_days=2)
    assert serving.use_batch_for(DAY.isoformat())
    assert not serving.use_batch_for((datetime.now(UTC).date() - timedelta(days=1)).isoformat())
    assert workspace.run(workspace.defs(serving=serving), instance, DAY).success
    enriched = output(workspace, "enriched_messages", DAY)
    batched = enriched["batch"]
    stats = server.stats()
    assert batched.any() and stats.batches_created == 1 and stats.batch_requests == batched.sum()
    assert latest_metadata(instance, "enriched_messages", DAY)["batch_api"] is True


def test_a_failed_blocking_check_keeps_the_day_away_from_the_models(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(DAY, per_day=100, faults="unparseable=0.5")
    result = workspace.run(workspace.defs(quarantine_ceiling=0.2), instance, DAY)
    assert not result.success
    assert "enriched_messages" not in {e.step_key for e in result.get_step_success_events()}
    assert not (workspace.storage / "enriched_messages" / f"{DAY}.parquet").exists()


def test_a_missing_artifact_fails_the_run_with_the_fix(workspace, instance, smoke_model, tmp_path):
    moved = tmp_path / "elsewhere.joblib"
    moved.write_bytes(smoke_model.path.read_bytes())
    workspace.install_model(type(smoke_model)(smoke_model.candidate, moved))
    moved.unlink()
    workspace.simulate(DAY, per_day=30)
    result = workspace.run(workspace.defs(), instance, DAY)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "cannot be loaded" in str(failure.step_failure_data.error) and \
        "model rollback" in str(failure.step_failure_data.error)
