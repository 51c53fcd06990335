"""Asset partitions as Parquet files: `{base_dir}/{asset}/{partition}.parquet`.

Writes go to a temporary file and are renamed into place, so a killed run never leaves a
half-written partition for the next step to read.

An input that reads a window of partitions (a drift check's day and its trailing days) may say
`metadata={PARTITION_WINDOW: True}`: it then gets `{partition: frame}` of the days of the window
that were materialized; days never materialized are left out instead of failing the load.
Without that flag every partition must exist and the frames are concatenated.
"""


from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext

from ai_assets.files import replacing

PARTITION_WINDOW = "ai_assets/partition_window"


class ParquetIOManager(ConfigurableIOManager):
    base_dir: str

    def _path(self, asset_path: list[str], partition: str | None) -> Path:
        return Path(self.base_dir).joinpath(*asset_path) / f"{partition or 'all'}.parquet"

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key.path, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two runs of the same partition (sensor and schedule, a re-execution during a
        # backfill) each write a temporary file of their own; the last rename wins.
        with replacing(path) as tmp:
            obj.to_parquet(tmp, index=False)
        context.add_output_metadata({"path": str(path)})

    def load_input(self, context: InputContext) -> pd.DataFrame | dict[str, pd.DataFrame]:
        key = context.asset_key.path
        if not context.has_asset_partitions:
            return pd.read_parquet(self._path(key, None))
        keys = list(context.asset_partition_keys)
        if context.definition_metadata.get(PARTITION_WINDOW):
            return {pk: pd.read_parquet(self._path(key, pk)) for pk in keys if self._path(key, pk).exists()}
        frames = [pd.read_parquet(self._path(key, pk)) for pk in keys]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
