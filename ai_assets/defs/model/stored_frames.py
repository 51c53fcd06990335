"""Reading the daily frames another area stored, without depending on its assets.

`shadow_evaluation` answers recent traffic, but it cannot declare `validated_messages` or
`enriched_messages` as inputs: enriched_messages depends on production_intent_model, which
waits for the shadow gate, so that would be a cycle, and an unpartitioned asset reading a
daily one would load every day ever stored. It reads the Parquet files the project's IO manager
wrote instead, at the layout `ParquetIOManager` documents: `{base_dir}/{asset}/{day}.parquet`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd


def partition_file(base_dir: str | Path, asset: str, day: str) -> Path:
    return Path(base_dir) / asset / f"{day}.parquet"


def stored_days(base_dir: str | Path, asset: str) -> list[str]:
    """The days (YYYY-MM-DD) of `asset` stored, oldest first; temporary files are not days."""
    folder = Path(base_dir) / asset
    if not folder.is_dir():
        return []
    days = []
    for path in folder.glob("*.parquet"):
        try:
            if date.fromisoformat(path.stem).isoformat() == path.stem:
                days.append(path.stem)
        except ValueError:
            continue
    return sorted(days)


def recent_days(base_dir: str | Path, asset: str, days: int) -> list[str]:
    """The stored days of `asset` among the `days` calendar days ending at its newest stored day
    (not today: a demo or a replay of past days is recent in its own time). [] when none."""
    stored = stored_days(base_dir, asset)
    if not stored or days <= 0:
        return []
    first = (date.fromisoformat(stored[-1]) - timedelta(days=days - 1)).isoformat()
    return [d for d in stored if d >= first]


def read_day(base_dir: str | Path, asset: str, day: str) -> pd.DataFrame | None:
    """That day's frame, None when it was never materialized."""
    path = partition_file(base_dir, asset, day)
    return pd.read_parquet(path) if path.exists() else None
