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


def test_a_replayed_day_with_out_of_domain_messages_is_flagged_and_says_what_moved(workspace, instance, smoke_model,
                                                                                 tmp_path):
    """`ai-assets simulate --from FILE` traffic (text only, no labels) is monitored like any day: 20%
    of it is non-banking CLINC150 text, and the input drift check names the novel messages."""
    from ai_assets.data.datasets import load_clinc_out_of_scope, split_banking77
    from ai_assets.simulator import load_replay_source, simulate_day, write_day

    workspace.install_model(smoke_model)
    banking = [r.text for r in split_banking77()["replay"][:800]]
    foreign = [r.text for r in load_clinc_out_of_scope() if r.domain == "travel"][:200]
    source = tmp_path / "replay.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in banking + foreign))
    files, resolved, ledger = simulate_day(MONDAY, load_replay_source(source), 600, {}, seed=3, pii_rate=0.0)
    assert resolved == []  # no labels in a text-only replay
    write_day(workspace.landing, MONDAY, files, resolved, ledger)
    defs = workspace.defs()
    day = workspace.run(defs, instance, MONDAY)
    assert day.success
    drift = latest_metadata(instance, "input_drift", MONDAY.isoformat())
    assert drift["status"] == "drift"
    moved = [m["feature"] for m in drift["moved"]]
    assert "novelty" in moved
    examples = " ".join(drift["examples"])
    assert sum(text[:40] in examples for text in foreign) >= 3  # the examples are the foreign messages
    assert check_results(day)["input_drift_vs_training"] is False
    assert latest_metadata(instance, "prediction_drift", MONDAY.isoformat())["status"] in ("ok", "drift")
    labels = workspace.run(defs, instance, MONDAY, job="label_feedback_job")
    assert labels.success
    quality = latest_metadata(instance, "model_quality", MONDAY.isoformat())
    assert quality["labelled_share"] == 0.0 and quality["accuracy"] is None
