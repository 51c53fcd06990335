"""The code location loads: Dagster's own validation on the workspace, and the shape of the
one Definitions object a newcomer's `dagster dev` shows."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus

from ai_assets.defs.common import daily_partitions
from ai_assets_tests.conftest import REPO_ROOT

DAGSTER = str(Path(sys.executable).with_name("dagster"))
PARTITION_CHECKS = {
    ("raw_messages", "schema_matches_contract"),
    ("raw_messages", "landing_files_all_read"),
    ("raw_messages", "volume_within_trailing_band"),
    ("validated_messages", "quarantine_share_within_ceiling"),
    ("validated_messages", "counts_balance"),
    ("quarantined_messages", "quarantine_rows_explained"),
    ("enriched_messages", "every_message_enriched_once"),
    ("triage_decisions", "every_message_triaged_once"),
    ("case_actions", "every_decision_acted_once"),
    ("outbox_deliveries", "no_dead_letters"),
    ("resolved_cases", "resolved_feed_accounted"),
    ("resolved_cases", "resolved_feed_matches_day"),
    ("model_quality", "automated_precision_at_target"),
    ("model_quality", "accuracy_within_margin_of_validation"),
    ("model_quality", "estimate_matches_realised"),
    ("cost_report", "within_llm_budget"),
    ("input_drift", "input_drift_vs_training"),
    ("input_drift", "input_drift_vs_trailing_7_days"),
    ("prediction_drift", "prediction_drift_vs_training"),
    ("prediction_drift", "prediction_drift_vs_trailing_7_days"),
}
BLOCKING = {("validated_messages", "quarantine_share_within_ceiling"), ("validated_messages", "counts_balance"),
            ("enriched_messages", "every_message_enriched_once"), ("triage_decisions", "every_message_triaged_once"),
            ("case_actions", "every_decision_acted_once"), ("resolved_cases", "resolved_feed_accounted")}
GROUPS = {"raw_messages": "ingestion", "validated_messages": "ingestion", "quarantined_messages": "ingestion",
          "enriched_messages": "enrichment", "intent_model": "model", "production_intent_model": "model",
          "training_data": "model", "shadow_evaluation": "model", "review_actions": "review",
          "triage_decisions": "actions", "case_actions": "actions", "outbox_deliveries": "actions",
          **dict.fromkeys(("resolved_cases", "quarantined_resolved_cases", "quality_estimate", "model_quality",
                           "input_drift", "prediction_drift", "pipeline_metrics", "cost_report", "business_metrics"), "monitoring")}
# Results in the operations database and the receivers, or figures in the metadata only.
NO_STORED_VALUE = {"outbox_deliveries", "quality_estimate", "model_quality", "input_drift", "prediction_drift",
                   "pipeline_metrics", "cost_report", "business_metrics", "review_actions"}
# Trained, promoted or applied as a whole, not per day.
UNPARTITIONED_GROUPS = ("model", "review")


def test_dagster_definitions_validate_passes(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AI_ASSETS_")},
           "DAGSTER_HOME": str(home), "AI_ASSETS_DATA_DIR": str(tmp_path / "var")}
    proc = subprocess.run([DAGSTER, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ai_assets" in proc.stdout + proc.stderr


def test_definitions_load_with_expected_assets_checks_sensors():
    from ai_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()} == GROUPS
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in UNPARTITIONED_GROUPS:
            assert node.partitions_def is None
        else:
            assert node.partitions_def == daily_partitions
            assert ("dagster/column_schema" in node.metadata) != (key.to_user_string() in NO_STORED_VALUE)

    checks = {(k.asset_key.to_user_string(), k.name): graph.get(k) for k in graph.asset_check_keys}
    freshness = {k for k in checks if k[1] == "freshness_check"}
    assert freshness == {(a, "freshness_check") for a in ("raw_messages", "validated_messages",
                                                          "quarantined_messages")}
    gates = {("intent_model", "candidate_not_worse_than_production"),
             ("shadow_evaluation", "candidate_not_worse_in_shadow")}
    for gate in gates:
        assert checks[gate].blocking and checks[gate].partitions_def is None
    failed_decisions = ("review_actions", "no_failed_decisions")  # a WARN: alerts, stops nothing
    assert not checks[failed_decisions].blocking and checks[failed_decisions].partitions_def is None
    assert set(checks) - freshness - gates - {failed_decisions} == PARTITION_CHECKS
    for key in PARTITION_CHECKS:  # a partitioned asset's checks must read their own day
        assert checks[key].partitions_def == daily_partitions, key
        assert checks[key].blocking is (key in BLOCKING), key

    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"landing_zone_sensor", "ingestion_freshness_sensor", "resolved_cases_sensor",
                            "check_alert_sensor", "run_failure_alert_sensor", "review_decisions_sensor",
                            "review_escalation_sensor", "retraining_sensor"}
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    assert {s.name for s in defs.schedules} == {"ingestion_job_schedule", "outbox_retry_job_schedule"}
    assert all(s.default_status == DefaultScheduleStatus.RUNNING for s in defs.schedules)

    job = defs.resolve_job_def("ingestion_job")
    assert job.partitions_def == daily_partitions
    assert {"ingestion_job", "model_training_job", "outbox_retry_job", "label_feedback_job", "review_actions_job"} <= {
        j.name for j in defs.resolve_all_job_defs()}
    for resource in ("landing_zone", "io_manager", "ingestion_policy", "ops_database", "model_serving",
                     "model_training", "action_settings", "monitoring_settings", "notifier"):
        assert resource in defs.resources
    # raw -> validated and quarantined, produced together from the same step.
    assert graph.get(AssetKey("validated_messages")).parent_keys == {AssetKey("raw_messages")}
    assert graph.get(AssetKey("quarantined_messages")).parent_keys == {AssetKey("raw_messages")}
    assert graph.get(AssetKey("enriched_messages")).parent_keys == {AssetKey("validated_messages"),
                                                                     AssetKey("production_intent_model")}
    # enriched -> triage -> actions -> deliveries, all in the daily job after validation.
    for child, parent in (("triage_decisions", "enriched_messages"), ("case_actions", "triage_decisions"),
                          ("outbox_deliveries", "case_actions")):
        assert graph.get(AssetKey(child)).parent_keys == {AssetKey(parent)}
    assert {"triage_decisions", "case_actions", "outbox_deliveries"} <= {
        k.to_user_string() for k in job.asset_layer.selected_asset_keys}
