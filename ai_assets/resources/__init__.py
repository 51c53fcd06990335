"""The one place that decides local versus production configuration.

Everything comes from the environment: `AI_ASSETS_DATA_DIR` (default `./var`) holds the
landing zone, the asset storage, the model artifacts and the SQLite operations database;
`AI_ASSETS_LANDING_DIR`, `AI_ASSETS_STORAGE_DIR`, `AI_ASSETS_MODELS_DIR` and
`AI_ASSETS_OPS_DB_URL` (PostgreSQL in production) override each part;
`AI_ASSETS_MAX_FILE_BYTES` bounds one landing file (default 64 MiB; larger files are refused). The LLM tiers are on
only when `ANTHROPIC_API_KEY` is set; the key and `ANTHROPIC_BASE_URL` (a gateway; unset: the
SDK's default) are read through `EnvVar`, so they are never part of the stored run
configuration.
"""


import os
from pathlib import Path

from dagster import EnvVar

from ai_assets.ingestion.landing_files import DEFAULT_MAX_FILE_BYTES
from ai_assets.ops_db import default_url
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.resources.model_serving import ModelServing
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.resources.parquet_io_manager import ParquetIOManager

__all__ = ["ActionSettings", "IngestionPolicy", "IntentModelTraining", "LandingZone", "ModelServing", "OpsDatabaseResource",
           "ParquetIOManager", "build_resources"]


def data_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_DATA_DIR", "var")).absolute()


def landing_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_LANDING_DIR", data_dir() / "landing")).absolute()


def storage_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_STORAGE_DIR", data_dir() / "storage")).absolute()


def models_dir() -> Path:
    return Path(os.environ.get("AI_ASSETS_MODELS_DIR", data_dir() / "models")).absolute()


def ingestion_policy_from_env() -> IngestionPolicy:
    """Layer 1's thresholds; `ai-assets evaluate` uses the same, to treat rows as live traffic."""
    return IngestionPolicy(quarantine_ceiling=float(os.environ.get("AI_ASSETS_QUARANTINE_CEILING", "0.20")))


def model_serving_from_env(in_dagster: bool = True) -> ModelServing:
    """In Dagster the key and base URL stay `EnvVar` references, resolved at run time;
    outside (the CLI) the resource is used directly, so it takes the values."""
    env = os.environ
    return ModelServing(
        anthropic_api_key=_secret("ANTHROPIC_API_KEY", in_dagster),
        anthropic_base_url=_secret("ANTHROPIC_BASE_URL", in_dagster),
        daily_budget_usd=float(env.get("AI_ASSETS_LLM_DAILY_BUDGET_USD", "20")),
        run_budget_usd=float(env.get("AI_ASSETS_LLM_RUN_BUDGET_USD", "5")),
    )


def _secret(name: str, in_dagster: bool) -> EnvVar | str | None:
    """An `EnvVar` reference in Dagster (never stored in run config), the value outside."""
    value = os.environ.get(name) or None
    return EnvVar(name) if value and in_dagster else value


def action_settings_from_env(in_dagster: bool = True) -> ActionSettings:
    """Without `AI_ASSETS_SMTP_HOST` / `AI_ASSETS_WEBHOOK_URL`, e-mail and events are files in
    `AI_ASSETS_OUTBOX_DIR` (default var/outbox)."""
    env = os.environ
    return ActionSettings(
        routing_policy_path=env.get("AI_ASSETS_ROUTING_POLICY") or None,
        outbox_dir=str(Path(env.get("AI_ASSETS_OUTBOX_DIR", data_dir() / "outbox")).absolute()),
        smtp_host=env.get("AI_ASSETS_SMTP_HOST") or None,
        smtp_port=int(env.get("AI_ASSETS_SMTP_PORT", "25")),
        smtp_username=env.get("AI_ASSETS_SMTP_USERNAME") or None,
        smtp_password=_secret("AI_ASSETS_SMTP_PASSWORD", in_dagster),
        smtp_starttls=env.get("AI_ASSETS_SMTP_STARTTLS", "false").lower() in ("1", "true", "yes"),
        webhook_url=_secret("AI_ASSETS_WEBHOOK_URL", in_dagster),  # such URLs often carry a token
        webhook_secret=_secret("AI_ASSETS_WEBHOOK_SECRET", in_dagster),
        max_attempts=int(env.get("AI_ASSETS_OUTBOX_MAX_ATTEMPTS", "8")),
        base_backoff_s=float(env.get("AI_ASSETS_OUTBOX_BASE_BACKOFF_S", "30")),
        delivery_deadline_s=float(env.get("AI_ASSETS_OUTBOX_DEADLINE_S", "20")),
    )


def build_resources() -> dict[str, object]:
    return {
        "landing_zone": LandingZone(root=str(landing_dir()), max_file_bytes=int(
            os.environ.get("AI_ASSETS_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))),
        "io_manager": ParquetIOManager(base_dir=str(storage_dir())),
        "ingestion_policy": ingestion_policy_from_env(),
        # A PostgreSQL URL may carry a password: through EnvVar it never shows in the UI.
        "ops_database": OpsDatabaseResource(url=EnvVar("AI_ASSETS_OPS_DB_URL") if os.environ.get("AI_ASSETS_OPS_DB_URL")
                                    else default_url()),
        "model_serving": model_serving_from_env(),
        "action_settings": action_settings_from_env(),
        "model_training": IntentModelTraining(
            models_dir=str(models_dir()),
            encoder=os.environ.get("AI_ASSETS_MODEL_ENCODER", "minilm"),
            rows_per_intent=int(os.environ.get("AI_ASSETS_MODEL_ROWS_PER_INTENT", "0")),
        ),
    }
