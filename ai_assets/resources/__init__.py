"""The one place that decides local versus production configuration.

Everything comes from the environment: `AI_ASSETS_DATA_DIR` (default `./var`) holds the
landing zone, the asset storage, the model artifacts and the SQLite operations database;
`AI_ASSETS_LANDING_DIR`, `AI_ASSETS_STORAGE_DIR`, `AI_ASSETS_MODELS_DIR` and
`AI_ASSETS_OPS_DB_URL` (PostgreSQL in production) override each part. The LLM tiers are on
only when `ANTHROPIC_API_KEY` is set; the key is read through `EnvVar`, so it is never part
of the stored run configuration.
"""


import os
from pathlib import Path

from dagster import EnvVar

from ai_assets.ops_db import default_url
from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.resources.model_serving import ModelServing
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabase
from ai_assets.resources.parquet_io_manager import ParquetIOManager

__all__ = ["IngestionPolicy", "IntentModelTraining", "LandingZone", "ModelServing", "OpsDatabase",
           "ParquetIOManager", "build_resources"]


def data_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_DATA_DIR", "var")).absolute()


def landing_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_LANDING_DIR", data_dir() / "landing")).absolute()


def storage_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_STORAGE_DIR", data_dir() / "storage")).absolute()


def models_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_MODELS_DIR", data_dir() / "models")).absolute()


def model_serving_from_env(in_dagster: bool = True) -> ModelServing:
    """In Dagster the key stays an `EnvVar` reference, resolved at run time; outside (the CLI)
    the resource is used directly, so it takes the value."""
    env = os.environ
    key = env.get("ANTHROPIC_API_KEY") or None
    return ModelServing(
        anthropic_api_key=EnvVar("ANTHROPIC_API_KEY") if key and in_dagster else key,
        anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
        daily_budget_usd=float(env.get("AI_ASSETS_LLM_DAILY_BUDGET_USD", "20")),
        run_budget_usd=float(env.get("AI_ASSETS_LLM_RUN_BUDGET_USD", "5")),
    )


def build_resources() -> dict[str, object]:
    return {
        "landing_zone": LandingZone(root=str(landing_dir())),
        "io_manager": ParquetIOManager(base_dir=str(storage_dir())),
        "ingestion_policy": IngestionPolicy(
            quarantine_ceiling=float(os.environ.get("AI_ASSETS_QUARANTINE_CEILING", "0.20")),
        ),
        # A PostgreSQL URL may carry a password: through EnvVar it never shows in the UI.
        "ops_database": OpsDatabase(url=EnvVar("AI_ASSETS_OPS_DB_URL") if os.environ.get("AI_ASSETS_OPS_DB_URL")
                                    else default_url()),
        "model_serving": model_serving_from_env(),
        "model_training": IntentModelTraining(
            models_dir=str(models_dir()),
            encoder=os.environ.get("AI_ASSETS_MODEL_ENCODER", "minilm"),
            rows_per_intent=int(os.environ.get("AI_ASSETS_MODEL_ROWS_PER_INTENT", "0")),
        ),
    }
