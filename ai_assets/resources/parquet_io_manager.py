"""Asset partitions as Parquet files: `{base_dir}/{asset}/{partition}.parquet`.

Writes go to a temporary file and are renamed into place, so a killed run never leaves a
half-written partition for the next step to read.

An input that reads a window of partitions (the trailing days a drift check compares with) may
say `metadata={ALLOW_MISSING_PARTITIONS: True}`: the days of the window that were never
materialized are then left out instead of failing the load, and the frame carries the days it
holds in `frame.attrs["partitions"]`. Without that flag a missing partition is an error.
"""


import uuid
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

ALLOW_MISSING_PARTITIONS = "ai_assets/allow_missing_partitions"


class ParquetIOManager(ConfigurableIOManager):
    base_dir: str

    def _path(self, asset_path: list[str], partition: str | None) -> Path:
        return Path(self.base_dir).joinpath(*asset_path) / f"{partition or 'all'}.parquet"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key.path, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per write: two runs of the same partition (sensor and schedule,
        # a re-execution during a backfill) must not write into each other's temporary file.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        obj.to_parquet(tmp, index=False)
        tmp.replace(path)
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        key = context.asset_key.path
        if not context.has_asset_partitions:
            return pd.read_parquet(self._path(key, None))
        keys = list(context.asset_partition_keys)
        if not context.definition_metadata.get(ALLOW_MISSING_PARTITIONS):
            frames = [pd.read_parquet(self._path(key, pk)) for pk in keys]
            return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        keys = [pk for pk in keys if self._path(key, pk).exists()]
        frame = pd.concat([pd.read_parquet(self._path(key, pk)) for pk in keys], ignore_index=True) if keys \
            else pd.DataFrame()
        frame.attrs["partitions"] = keys
        return frame
