"""Integration: the partitioned ingestion graph materialized in a real temporary Dagster
instance, from simulated landing files to Parquet partitions, reconciled against the
simulator's ledger. No mocks: real files, real GX suite, real IO manager, real instance."""

import hashlib
import multiprocessing
from datetime import date, timedelta

import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, build_output_context

from ai_assets.ingestion.parsing import schema_fingerprint
from ai_assets.ingestion.validation import build_suite
from ai_assets.resources import ParquetIOManager
from ai_assets.schemas import CONTRACT_FIELDS
from ai_assets.simulator import FAULT_KINDS, FAULT_OUTCOME, SCHEMA_CHANGING_FAULTS
from ai_assets_tests.conftest import Workspace
from ai_assets_tests.fault_expectations import QUARANTINE_REASON

# Each test materializes partitions end to end through Dagster (several runs, Parquet files).
pytestmark = pytest.mark.slow

MONDAY = date(2025, 3, 3)
ASSETS = ("raw_messages", "validated_messages", "quarantined_messages")
PARTITION_CHECKS = {"every_message_enriched_once", "schema_matches_contract", "landing_files_all_read", "volume_within_trailing_band",
                    "quarantine_share_within_ceiling", "counts_balance", "quarantine_rows_explained",
                    "every_message_triaged_once", "every_decision_acted_once", "no_dead_letters",
                    # the day's monitoring, in the same run
                    "within_llm_budget", "input_drift_vs_training", "input_drift_vs_trailing_7_days",
                    "prediction_drift_vs_training", "prediction_drift_vs_trailing_7_days"}



def latest_metadata(instance, asset: str, day: date) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[day.isoformat()]), limit=1).records
    assert records, f"{asset} {day} was not materialized"
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def output(workspace, asset: str, day: date) -> pd.DataFrame:
    return pd.read_parquet(workspace.storage / asset / f"{day.isoformat()}.parquet")


def checks_by_name(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def locations(frame: pd.DataFrame) -> set[tuple[str, int]]:
    return set(zip(frame["source_file"].astype(str), frame["line"].astype(int)))


def storage_digest(workspace) -> dict[str, str]:
    return {str(p.relative_to(workspace.storage)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workspace.storage.rglob("*.parquet"))}


def test_materializes_several_days_with_metadata(workspace, instance):
    days = [MONDAY + timedelta(days=i) for i in range(3)]
    ledgers = {day: workspace.simulate(day, per_day=200) for day in days}
    defs = workspace.defs()
    for day in days:
        result = workspace.run(defs, instance, day)
        assert result.success
        # The job runs exactly the partition checks; freshness checks have their own sensor.
        checks = checks_by_name(result)
        assert set(checks) == PARTITION_CHECKS
        assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}

    for asset in ASSETS:
        assert instance.get_materialized_partitions(AssetKey(asset)) == {d.isoformat() for d in days}

    for day, ledger in ledgers.items():
        landing_files = sorted((workspace.landing / "messages" / day.isoformat()).glob("*.jsonl"))
        lines = sum(ledger.files.values())
        raw = latest_metadata(instance, "raw_messages", day)
        assert raw["files"] == len(ledger.files) == len(landing_files) == 3
        assert raw["rows"] == raw["dagster/row_count"] == lines == len(output(workspace, "raw_messages", day))
        assert raw["bytes"] == sum(p.stat().st_size for p in landing_files)
        assert raw["schema_fingerprint"] == schema_fingerprint(set(CONTRACT_FIELDS))
        assert raw["observed_fields"] == sorted(CONTRACT_FIELDS)
        assert raw["parse_errors"] == {} and raw["empty_files"] == []
        assert raw["path"] == str(workspace.storage / "raw_messages" / f"{day}.parquet")

        validated = output(workspace, "validated_messages", day)
        val = latest_metadata(instance, "validated_messages", day)
        assert val["rows_in"] == lines == ledger.messages
        assert val["validated"] == val["dagster/row_count"] == len(validated) == ledger.messages
        assert (val["quarantined"], val["duplicates"], val["quarantine_share"]) == (0, 0, 0.0)
        gx = val["gx_suite"]
        assert gx["success"] is True and gx["unsuccessful_expectations"] == 0
        assert gx["evaluated_expectations"] == len(build_suite(day).expectations)
        assert set(gx["unexpected_by_expectation"].values()) == {0}
        # Every injected PII span was masked, and no sample survives in the text models see.
        assert sum(val["pii_masked"].values()) == validated["pii_masked"].sum() == ledger.pii_injected > 0
        for sample in ("4111 1111 1111 1111", "jane.doe@example.com", "7946 0958", "GB82 WEST"):
            assert not validated["text"].str.contains(sample, regex=False).any()
        # Contract of the output: unique ids, inside the day, sorted by time.
        assert validated["message_id"].is_unique
        assert validated["received_at"].dt.date.eq(day).all()
        assert validated["received_at"].is_monotonic_increasing

        qua = latest_metadata(instance, "quarantined_messages", day)
        assert qua["dagster/row_count"] == qua["quarantined"] == 0 and qua["quarantined_by_reason"] == {}
        assert len(output(workspace, "quarantined_messages", day)) == 0


def test_declared_column_schema_matches_parquet_columns(workspace, instance):
    workspace.simulate(MONDAY, per_day=200, faults="all=0.02")
    defs = workspace.defs()
    assert workspace.run(defs, instance, MONDAY).success
    graph = defs.resolve_asset_graph()
    for asset in ASSETS:
        declared = graph.get(AssetKey(asset)).metadata["dagster/column_schema"]
        schema = getattr(declared, "schema", declared)  # a TableSchema, or its metadata value
        assert [c.name for c in schema.columns] == list(output(workspace, asset, MONDAY).columns), asset


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_end_to_end(workspace, instance, kind):
    ledger = workspace.simulate(MONDAY, per_day=300, faults=f"{kind}=0.03")
    n = ledger.faults[kind]
    assert set(ledger.faults) == {kind} and n == (1 if kind == "empty_file" else 9)
    faulty = {(r["file"], r["line"]) for r in ledger.fault_rows}

    result = workspace.run(workspace.defs(), instance, MONDAY)
    assert result.success

    raw = output(workspace, "raw_messages", MONDAY)
    validated = output(workspace, "validated_messages", MONDAY)
    quarantined = output(workspace, "quarantined_messages", MONDAY)
    meta = latest_metadata(instance, "validated_messages", MONDAY)
    qmeta = latest_metadata(instance, "quarantined_messages", MONDAY)
    rows_in = sum(ledger.files.values())
    assert meta["rows_in"] == qmeta["rows_in"] == len(raw) == rows_in
    assert meta["validated"] == len(validated) and meta["quarantined"] == qmeta["quarantined"] == len(quarantined)
    assert rows_in == len(validated) + len(quarantined) + meta["duplicates"]
    assert validated["message_id"].is_unique
    assert sum(qmeta["quarantined_by_reason"].values()) == len(quarantined)

    outcome = FAULT_OUTCOME[kind]
    if outcome == "quarantine":
        stage, reason = QUARANTINE_REASON[kind]
        assert locations(quarantined) == faulty and len(quarantined) == n
        assert set(quarantined["stage"]) == {stage}
        assert quarantined["reason"].str.startswith(reason).all(), set(quarantined["reason"])
        assert not locations(validated) & faulty
        assert len(validated) == ledger.messages - n and meta["duplicates"] == 0
        assert meta["quarantine_share"] == round(n / rows_in, 6)
    elif outcome == "duplicate":
        assert len(quarantined) == 0
        assert meta["duplicates"] == n and len(validated) == ledger.messages
        # The first delivery is kept; the re-delivery on the next line is dropped.
        assert faulty <= locations(validated)
        assert not {(f, line + 1) for f, line in faulty} & locations(validated)
    elif outcome == "accepted":
        assert len(quarantined) == 0 and meta["duplicates"] == 0
        assert faulty <= locations(validated) and len(validated) == rows_in
    else:  # an empty file: counted as a file, contributes no rows
        assert kind == "empty_file"
        rmeta = latest_metadata(instance, "raw_messages", MONDAY)
        assert rmeta["files"] == 4 and rmeta["empty_files"] == ["app-retry.jsonl"]
        assert len(quarantined) == 0 and len(validated) == rows_in == ledger.messages

    checks = checks_by_name(result)
    assert set(checks) == PARTITION_CHECKS
    schema = checks.pop("schema_matches_contract")
    assert schema.passed is (kind not in SCHEMA_CHANGING_FAULTS)
    assert schema.severity.value == "WARN"
    outside = schema.metadata["fields_outside_contract"].value
    assert outside == {"renamed_field": ["body"], "added_field": ["locale"]}.get(kind, [])
    assert all(c.passed for c in checks.values()), {name: c.description for name, c in checks.items()}
    balance = checks["counts_balance"].metadata
    assert balance["rows_in"].value == rows_in
    assert balance["duplicates"].value == meta["duplicates"]


@pytest.mark.parametrize("seed", [7, 11])
def test_counts_balance_under_every_fault_kind_at_once(workspace, instance, seed):
    ledger = workspace.simulate(MONDAY, per_day=400, faults="all=0.02", seed=seed)
    assert set(ledger.faults) == set(FAULT_KINDS)
    result = workspace.run(workspace.defs(), instance, MONDAY)
    assert result.success

    validated = output(workspace, "validated_messages", MONDAY)
    quarantined = output(workspace, "quarantined_messages", MONDAY)
    meta = latest_metadata(instance, "validated_messages", MONDAY)
    to_quarantine = {(r["file"], r["line"]) for r in ledger.fault_rows
                     if FAULT_OUTCOME[r["kind"]] == "quarantine"}
    rows_in = sum(ledger.files.values())
    assert locations(quarantined) == to_quarantine
    assert len(quarantined) == meta["quarantined"] == sum(
        n for kind, n in ledger.faults.items() if FAULT_OUTCOME[kind] == "quarantine")
    assert meta["duplicates"] == ledger.faults["duplicate_id"]
    assert meta["rows_in"] == rows_in == len(validated) + len(quarantined) + meta["duplicates"]
    assert len(validated) == meta["validated"] == ledger.messages - len(to_quarantine)
    assert not locations(validated) & locations(quarantined)

    by_reason = latest_metadata(instance, "quarantined_messages", MONDAY)["quarantined_by_reason"]
    assert by_reason["invalid_json"] == ledger.faults["unparseable"]
    assert by_reason["invalid_utf8"] == ledger.faults["invalid_utf8"]
    assert by_reason["expect_column_values_to_be_between(received_at_utc)"] == ledger.faults["out_of_window"]
    assert by_reason["expect_column_value_lengths_to_be_between(text_normalised)"] == (
        ledger.faults["empty_text"] + ledger.faults["overlong_text"])

    checks = checks_by_name(result)
    assert checks["counts_balance"].passed
    assert {k: checks["counts_balance"].metadata[k].value
            for k in ("rows_in", "validated", "quarantined", "duplicates")} == {
        "rows_in": rows_in, "validated": len(validated), "quarantined": len(quarantined),
        "duplicates": ledger.faults["duplicate_id"]}
    assert checks["counts_balance"].metadata["unaccounted"].value == []
    assert checks["counts_balance"].metadata["counted_twice"].value == []


def test_day_without_landing_files_materializes_an_empty_partition(workspace, instance):
    result = workspace.run(workspace.defs(), instance, MONDAY)
    assert result.success
    raw = latest_metadata(instance, "raw_messages", MONDAY)
    val = latest_metadata(instance, "validated_messages", MONDAY)
    assert (raw["files"], raw["rows"], raw["bytes"]) == (0, 0, 0)
    assert (val["rows_in"], val["validated"], val["quarantined"], val["quarantine_share"]) == (0, 0, 0, 0.0)
    assert len(output(workspace, "validated_messages", MONDAY)) == 0


def test_rerunning_a_partition_gives_byte_identical_outputs(workspace, instance, tmp_path):
    workspace.simulate(MONDAY, per_day=300, faults="all=0.02")
    defs = workspace.defs()
    assert workspace.run(defs, instance, MONDAY).success
    first = storage_digest(workspace)
    # enriched_messages and triage_decisions too: without a production model their rows carry no
    # measured latency; case_actions holds the ledger's outcome, the same on a re-run.
    assert set(first) == {f"{a}/{MONDAY}.parquet"
                          for a in (*ASSETS, "enriched_messages", "triage_decisions", "case_actions")}
    assert workspace.run(defs, instance, MONDAY).success
    assert storage_digest(workspace) == first

    # Same landing files, another storage directory and a fresh run: the same bytes again.
    other = Workspace(tmp_path / "other")
    other.simulate(MONDAY, per_day=300, faults="all=0.02")
    assert other.run(other.defs(), instance, MONDAY).success
    assert storage_digest(other) == first


def write_partition_repeatedly(base_dir: str, times: int) -> int:
    """One writer process: stores the same partition `times` times, returns how many failed."""
    io_manager = ParquetIOManager(base_dir=base_dir)
    frame = pd.DataFrame({"n": range(50_000), "text": ["where is my card"] * 50_000})
    failures = 0
    for _ in range(times):
        context = build_output_context(asset_key=AssetKey("validated_messages"),
                                       partition_key=MONDAY.isoformat())
        try:
            io_manager.handle_output(context, frame)
        except OSError:
            failures += 1
    return failures


def test_concurrent_writes_of_one_partition_do_not_collide(workspace):
    """Two runs of the same day at once (the sensor's and the schedule's, or a re-execution
    during a backfill) each publish a whole file; neither fails on the other's temporary file."""
    pool = multiprocessing.get_context("spawn").Pool(2)
    try:
        failures = pool.starmap(write_partition_repeatedly, [(str(workspace.storage), 15)] * 2)
    finally:
        # close + join, not terminate (what `with Pool` does): terminate sends SIGTERM, which the
        # workers inherit as ignored when pytest runs with SIGINT ignored (nohup, `&`) after a
        # Dagster run in this process mapped SIGTERM to SIGINT's handler; the join then hangs.
        pool.close()
        pool.join()
    assert failures == [0, 0]
    folder = workspace.storage / "validated_messages"
    assert [p.name for p in folder.iterdir()] == [f"{MONDAY}.parquet"]  # no temporary files left
    assert len(pd.read_parquet(folder / f"{MONDAY}.parquet")) == 50_000
