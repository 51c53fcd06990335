"""Integration: the monitoring area on real runs — the day's figures with the daily job, the
resolved cases a day later through their sensor and the label-feedback job, and the checks."""

import json
from datetime import date

import pandas as pd
import pytest
from dagster import AssetKey, build_sensor_context

from ai_assets.defs.monitoring.sensors import labelled_day, resolved_cases_sensor
from ai_assets.resources import LandingZone

pytestmark = pytest.mark.slow
MONDAY = date(2025, 3, 3)


def latest_metadata(instance, asset: str, partition: str) -> dict:
    (record,) = instance.fetch_materializations(
        _filter(asset, partition), limit=1).records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def _filter(asset: str, partition: str):
    from dagster import AssetRecordsFilter

    return AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition])


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_labelled_day_is_the_day_before_the_folder():
    assert labelled_day("2025-03-04") == "2025-03-03"
    assert labelled_day("2025-03-01") == "2025-02-28"
    for bad in ("20250304", "2025-W10-1", "notes", "2025-02-30"):
        assert labelled_day(bad) is None


def test_daily_run_then_resolved_cases_give_the_days_quality(workspace, instance, smoke_model):
    workspace.install_model(smoke_model)
    workspace.simulate(MONDAY, per_day=300)
    defs = workspace.defs()
    day = workspace.run(defs, instance, MONDAY)
    assert day.success
    pk = MONDAY.isoformat()

    estimate = latest_metadata(instance, "quality_estimate", pk)
    assert 0 < estimate["estimated_accuracy_low"] <= estimate["estimated_accuracy"] <= estimate["estimated_accuracy_high"] < 1
    validated = pd.read_parquet(workspace.storage / "validated_messages" / f"{pk}.parquet")
    business = latest_metadata(instance, "business_metrics", pk)
    assert business["messages"] == len(validated)
    assert business["automated"] + business["escalated"] + business["to_people"] == len(validated)
    pipeline = latest_metadata(instance, "pipeline_metrics", pk)
    assert pipeline["messages"] == len(validated) and pipeline["latency_ms_p50"] <= pipeline["latency_ms_p95"]
    assert pipeline["serving_step_s"] > 0
    cost = latest_metadata(instance, "cost_report", pk)
    assert cost["cost_today_usd"] == 0.0 and cost["messages"] == len(validated)
    assert check_results(day)["within_llm_budget"] is True

    # The feed lands a day later; its sensor asks for the quality run of the messages' day.
    tick = resolved_cases_sensor.evaluate_tick(build_sensor_context(
        instance=instance, definitions=defs, resources={"landing_zone": LandingZone(root=str(workspace.landing))}))
    (request,) = tick.run_requests
    assert request.partition_key == pk and request.job_name in (None, "label_feedback_job")
    assert set(json.loads(tick.cursor)) == {"2025-03-04"}
    labels = workspace.run(defs, instance, MONDAY, job="label_feedback_job")
    assert labels.success
    feed = latest_metadata(instance, "resolved_cases", pk)
    assert feed["balanced"] is True and feed["unknown_message_ids"] == 0
    assert feed["matched"] == len(validated)

    quality = latest_metadata(instance, "model_quality", pk)
    enriched = pd.read_parquet(workspace.storage / "enriched_messages" / f"{pk}.parquet")
    truth = pd.read_parquet(workspace.storage / "resolved_cases" / f"{pk}.parquet")
    joined = enriched.merge(truth, on="message_id")
    predicted = joined[joined["tier"] != "human"]
    assert quality["accuracy"] == round((predicted["intent"] == predicted["category"]).mean(), 4)
    assert quality["labelled_share"] == 1.0
    assert quality["accuracy_low"] < quality["accuracy"] < quality["accuracy_high"]
    assert quality["estimated_accuracy"] is not None and quality["estimate_gap"] is not None
    checks = check_results(labels)
    assert set(checks) >= {"resolved_feed_accounted", "resolved_feed_matches_day", "automated_precision_at_target",
                           "accuracy_within_margin_of_validation", "estimate_matches_realised"}
    assert checks["resolved_feed_accounted"] is True
