"""What the Dagster instance knows about every asset partition and its checks, as plain data."""

from collections.abc import Mapping
from datetime import UTC, datetime

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, Definitions, MetadataValue
from dagster._core.event_api import PartitionKeyFilter


def metadata_values(metadata: Mapping[str, MetadataValue]) -> dict:
    """Metadata entries as JSON-ready values; a column schema as its column names."""
    out = {}
    for name, entry in sorted(metadata.items()):
        value = getattr(entry, "value", entry)
        if name == "dagster/column_schema":
            out[name] = [c.name for c in value.columns]
        elif isinstance(value, (bool, int, float, str, list, dict)) or value is None:
            out[name] = value
        else:
            out[name] = str(value)
    return out


def _check_results(instance: DagsterInstance, check_keys, partition: str | None) -> list[dict]:
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        list(check_keys), partition_filter=PartitionKeyFilter(key=partition))
    out = []
    for key in sorted(check_keys, key=lambda k: k.name):
        record = latest.get(key)
        evaluation = record.evaluation if record else None
        out.append({
            "name": key.name,
            "partitioned": partition is not None,
            "status": record.status.value if record else "NOT_EXECUTED",
            "passed": evaluation.passed if evaluation else None,
            "severity": evaluation.severity.value if evaluation else None,
        })
    return out


def asset_status(instance: DagsterInstance, defs: Definitions) -> list[dict]:
    """One record per asset and materialized partition, with each check's latest result."""
    graph = defs.resolve_asset_graph()
    rows = []
    for key in sorted(graph.get_all_asset_keys(), key=AssetKey.to_user_string):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        checks = graph.get_check_keys_for_assets({key})
        partitioned_checks = {k for k in checks if graph.get(k).partitions_def is not None}
        asset_wide = _check_results(instance, checks - partitioned_checks, None)
        partitions = sorted(instance.get_materialized_partitions(key)) if node.is_partitioned else [None]
        for partition in partitions:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
                limit=1).records
            if not records:
                continue
            event = records[0].event_log_entry
            mat = event.asset_materialization
            rows.append({
                "asset": key.to_user_string(),
                "partition": partition,
                "materialized_at": datetime.fromtimestamp(event.timestamp, UTC).isoformat(),
                "run_id": event.run_id,
                "metadata": metadata_values(mat.metadata if mat else {}),
                "checks": (_check_results(instance, partitioned_checks, partition) if partition else [])
                + asset_wide,
            })
    return rows
