"""Integration: the layer-1 asset checks run inside real job runs on a temporary instance.

The blocking check is proven against a downstream asset that exists only in this test
(the package has no layer-2 asset yet): it must not run when the quarantine ceiling is
exceeded, and must run when it is not."""

from datetime import date, timedelta

import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, Definitions, asset, define_asset_job

from ai_assets.cli.instance_status import asset_status
from ai_assets.defs.common import daily_partitions
from ai_assets.defs.pipeline.jobs import ingestion_job

MONDAY = date(2025, 3, 3)



def checks_by_name(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@asset(partitions_def=daily_partitions, group_name="test_downstream")
def downstream_of_validated(validated_messages: pd.DataFrame) -> pd.DataFrame:
    """Stands in for layer 2 (enrichment): reads one day of validated messages."""
    return validated_messages[["message_id"]]


def with_downstream(defs: Definitions) -> Definitions:
    job = define_asset_job("ingestion_and_downstream", partitions_def=daily_partitions,
                           selection=ingestion_job.selection | AssetSelection.assets(downstream_of_validated))
    return Definitions.merge(defs, Definitions(assets=[downstream_of_validated], jobs=[job]))


@pytest.mark.slow
@pytest.mark.parametrize("ceiling, blocked", [(0.01, True), (0.20, False)])
def test_quarantine_ceiling_blocks_downstream_assets(workspace, instance, ceiling, blocked):
    ledger = workspace.simulate(MONDAY, per_day=300, faults="unparseable=0.03")  # 3% quarantined
    share = ledger.faults["unparseable"] / sum(ledger.files.values())
    defs = with_downstream(workspace.defs(quarantine_ceiling=ceiling))
    result = workspace.run(defs, instance, MONDAY, "ingestion_and_downstream")

    check = checks_by_name(result)["quarantine_share_within_ceiling"]
    assert check.severity.value == "ERROR"
    assert check.passed is not blocked
    assert check.metadata["quarantine_share"].value == pytest.approx(share, abs=1e-6)
    assert check.metadata["ceiling"].value == ceiling
    downstream_file = workspace.storage / "downstream_of_validated" / f"{MONDAY}.parquet"
    downstream_steps = {e.step_key for e in result.all_events if e.step_key == "downstream_of_validated"}
    materialized = instance.get_materialized_partitions(AssetKey("downstream_of_validated"))
    if blocked:
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert [e.step_key for e in failures] == ["validated_messages_quarantine_share_within_ceiling"]
        error = failures[0].step_failure_data.error
        assert error.cls_name == "DagsterAssetCheckFailedError"
        assert "quarantine_share_within_ceiling" in error.message
        assert not downstream_steps and not materialized and not downstream_file.exists()
        # The failed result is recorded in the instance, where `ai-assets status` reads it.
        row = next(r for r in asset_status(instance, defs)
                   if r["asset"] == "validated_messages" and r["partition"] == MONDAY.isoformat())
        recorded = {c["name"]: c for c in row["checks"]}["quarantine_share_within_ceiling"]
        assert (recorded["passed"], recorded["severity"]) == (False, "ERROR")
    else:
        assert result.success
        assert materialized == {MONDAY.isoformat()}
        assert len(pd.read_parquet(downstream_file)) == ledger.messages - ledger.faults["unparseable"]


@pytest.mark.slow
def test_ceiling_comes_from_the_policy_resource(workspace, instance):
    """Just under and just over the configured ceiling, with the same data."""
    ledger = workspace.simulate(MONDAY, per_day=300, faults="missing_field=0.05")
    share = ledger.faults["missing_field"] / sum(ledger.files.values())
    over = workspace.run(workspace.defs(quarantine_ceiling=round(share - 0.001, 4)), instance, MONDAY)
    under = workspace.run(workspace.defs(quarantine_ceiling=round(share + 0.001, 4)), instance, MONDAY)
    assert not over.success and checks_by_name(over)["quarantine_share_within_ceiling"].passed is False
    assert under.success and checks_by_name(under)["quarantine_share_within_ceiling"].passed is True


def simulate_trailing_week(workspace, day: date, per_day: int = 300) -> None:
    for i in range(1, 8):
        workspace.simulate(day - timedelta(days=i), per_day=per_day)


@pytest.mark.slow
@pytest.mark.parametrize("per_day, passed", [(30, False), (300, True), (1000, False)])
def test_volume_check_against_trailing_days(workspace, instance, per_day, passed):
    day = MONDAY + timedelta(days=7)
    simulate_trailing_week(workspace, day)
    ledger = workspace.simulate(day, per_day=per_day)
    result = workspace.run(workspace.defs(), instance, day)
    assert result.success  # a warning never stops the run
    check = checks_by_name(result)["volume_within_trailing_band"]
    assert check.passed is passed and check.severity.value == "WARN"
    assert check.metadata["rows"].value == sum(ledger.files.values())
    trailing = check.metadata["trailing_rows"].value
    assert sorted(trailing) == [(day - timedelta(days=i)).isoformat() for i in range(7, 0, -1)]
    assert all(n > 0 for n in trailing.values())
    ratio = check.metadata["ratio"].value
    assert (0.4 <= ratio <= 2.5) is passed
    # Only the day itself was materialized: the baseline comes from the landing zone.
    assert instance.get_materialized_partitions(AssetKey("raw_messages")) == {day.isoformat()}


@pytest.mark.slow
def test_silent_upstream_day_fails_the_volume_check(workspace, instance):
    day = MONDAY + timedelta(days=7)
    simulate_trailing_week(workspace, day)
    result = workspace.run(workspace.defs(), instance, day)  # no files at all for the day
    assert result.success
    check = checks_by_name(result)["volume_within_trailing_band"]
    assert check.passed is False and check.metadata["rows"].value == 0


@pytest.mark.slow
def test_first_day_without_history_passes_the_volume_check(workspace, instance):
    workspace.simulate(MONDAY, per_day=200)
    check = checks_by_name(workspace.run(workspace.defs(), instance, MONDAY))["volume_within_trailing_band"]
    assert check.passed is True and "no trailing days" in check.description


@pytest.mark.slow
def test_schema_check_reports_contract_fields_missing_from_a_file(workspace, instance):
    workspace.simulate(MONDAY, per_day=200)
    partner = workspace.landing / "messages" / MONDAY.isoformat() / "partner.jsonl"
    records = [f'{{"message_id":"p-{i}","channel":"app","received_at":"2025-03-03T10:0{i}:00Z",'
               f'"text":"where is my card {i}"}}' for i in range(3)]  # no customer_id at all
    partner.write_text("\n".join(records) + "\n")
    result = workspace.run(workspace.defs(), instance, MONDAY)
    assert result.success
    checks = checks_by_name(result)
    schema = checks["schema_matches_contract"]
    assert schema.passed is False and schema.severity.value == "WARN"
    assert schema.metadata["contract_fields_missing_by_file"].value == {"partner.jsonl": ["customer_id"]}
    assert schema.metadata["fields_outside_contract"].value == []
    quarantined = pd.read_parquet(workspace.storage / "quarantined_messages" / f"{MONDAY}.parquet")
    assert list(quarantined["source_file"]) == ["partner.jsonl"] * 3
    assert set(quarantined["reason"]) == {"expect_column_values_to_not_be_null(customer_id)"}
    assert checks["counts_balance"].passed


def test_quarantine_excerpts_never_show_pii(workspace, instance):
    workspace.simulate(MONDAY, per_day=200)
    broken = workspace.landing / "messages" / MONDAY.isoformat() / "broken.jsonl"
    broken.write_text('{"message_id":"b-1","text":"my card is 4111 1111 1111 1111 and mail jane.doe@example.com\n')
    result = workspace.run(workspace.defs(), instance, MONDAY)
    quarantined = pd.read_parquet(workspace.storage / "quarantined_messages" / f"{MONDAY}.parquet")
    assert len(quarantined) == 1 and quarantined["reason"][0] == "invalid_json"
    excerpt = quarantined["excerpt"][0]
    assert "4111" not in excerpt and "jane.doe@example.com" not in excerpt
    check = checks_by_name(result)["quarantine_rows_explained"]
    assert check.passed and check.metadata["excerpts_with_unmasked_pii"].value == 0
    assert check.metadata["without_reason_or_location"].value == 0
