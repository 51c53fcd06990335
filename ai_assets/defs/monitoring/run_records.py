"""What the Dagster instance knows about a day: the step records of the runs that produced its
assets, as plain dicts for `ai_assets.monitoring` (which imports no Dagster)."""

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

PIPELINE_STEPS = ("raw_messages", "validated_messages", "enriched_messages", "triage_decisions", "case_actions",
                  "outbox_deliveries")


def latest_run_ids(instance: DagsterInstance, partition: str, assets: tuple[str, ...] = PIPELINE_STEPS) -> list[str]:
    """The runs that last materialized each of `assets` for `partition` (usually one run: the
    daily job; a re-execution of one step makes two), in first-seen order."""
    run_ids: list[str] = []
    for name in assets:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(name), asset_partitions=[partition]), limit=1)
        for record in result.records:
            if record.run_id not in run_ids:
                run_ids.append(record.run_id)
    return run_ids


def step_records(instance: DagsterInstance, partition: str, assets: tuple[str, ...] = PIPELINE_STEPS) -> list[dict]:
    """Per step of those runs: step key, status, start and end (epoch seconds) and attempts.
    Steps still running (this one) have no end and are left out."""
    rows = []
    for run_id in latest_run_ids(instance, partition, assets):
        for stat in instance.get_run_step_stats(run_id):
            if stat.step_key not in assets or stat.start_time is None or stat.end_time is None:
                continue
            rows.append({"run_id": run_id, "step_key": stat.step_key,
                         "status": stat.status.value if stat.status else None,
                         "start_time": stat.start_time, "end_time": stat.end_time,
                         "attempts": stat.attempts or 1})
    return rows
