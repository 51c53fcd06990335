"""The one place that decides local versus production configuration.

Everything comes from the environment: `AI_ASSETS_DATA_DIR` (default `./var`) holds the
landing zone and the asset storage; `AI_ASSETS_LANDING_DIR` and `AI_ASSETS_STORAGE_DIR`
override each part, e.g. a mounted bucket path in production.
"""


import os
from pathlib import Path

from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.resources.parquet_io_manager import ParquetIOManager


__all__ = ["IngestionPolicy", "LandingZone", "ParquetIOManager", "build_resources"]


def data_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_DATA_DIR", "var")).absolute()


def landing_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_LANDING_DIR", data_dir() / "landing")).absolute()


def storage_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_STORAGE_DIR", data_dir() / "storage")).absolute()


def build_resources() -> dict[str, object]:
    return {
        "landing_zone": LandingZone(root=str(landing_dir())),
        "io_manager": ParquetIOManager(base_dir=str(storage_dir())),
        "ingestion_policy": IngestionPolicy(
            quarantine_ceiling=float(os.environ.get("AI_ASSETS_QUARANTINE_CEILING", "0.20")),
        ),
    }
