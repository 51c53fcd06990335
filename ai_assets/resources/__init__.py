"""The resources of the code location, built from `ai_assets.config` (the one environment reader;
its docstring lists every variable). Secrets (the Anthropic key and base URL, the operations
database URL, the SMTP password, the webhook URL and secret) stay `EnvVar` references in
Dagster, so they are never part of the stored run configuration."""

from dagster import EnvVar

from ai_assets.config import Settings, ops_db_url, secret
from ai_assets.ingestion.landing_files import DEFAULT_MAX_FILE_BYTES
from ai_assets.resources.actions import ActionSettings
from ai_assets.resources.ingestion_policy import IngestionPolicy
from ai_assets.resources.landing_zone import LandingZone
from ai_assets.resources.model_serving import ModelServing
from ai_assets.resources.model_training import IntentModelTraining
from ai_assets.resources.monitoring import MonitoringSettings
from ai_assets.resources.notifier import NotifierResource, notifier_from_env
from ai_assets.resources.ops_database import OpsDatabaseResource
from ai_assets.resources.parquet_io_manager import ParquetIOManager

__all__ = ["ActionSettings", "IngestionPolicy", "IntentModelTraining", "LandingZone", "ModelServing",
           "MonitoringSettings", "NotifierResource", "OpsDatabaseResource", "ParquetIOManager", "build_resources"]


def ingestion_policy_from_env() -> IngestionPolicy:
    """Layer 1's thresholds; `ai-assets evaluate` uses the same, to treat rows as live traffic."""
    return IngestionPolicy(quarantine_ceiling=Settings.from_env().quarantine_ceiling)


def model_serving_from_env(in_dagster: bool = True) -> ModelServing:
    """In Dagster the key and base URL stay `EnvVar` references, resolved at run time;
    outside (the CLI) the resource is used directly, so it takes the values."""
    settings = Settings.from_env()
    return ModelServing(
        anthropic_api_key=_secret("ANTHROPIC_API_KEY", in_dagster),
        anthropic_base_url=_secret("ANTHROPIC_BASE_URL", in_dagster),
        daily_budget_usd=settings.llm_daily_budget_usd,
        run_budget_usd=settings.llm_run_budget_usd,
    )


def _secret(name: str, in_dagster: bool) -> EnvVar | str | None:
    """An `EnvVar` reference in Dagster (never stored in run config), the value outside."""
    value = secret(name)
    return EnvVar(name) if value and in_dagster else value


def action_settings_from_env(in_dagster: bool = True) -> ActionSettings:
    """Without `AI_ASSETS_SMTP_HOST` / `AI_ASSETS_WEBHOOK_URL`, e-mail and events are files in
    `AI_ASSETS_OUTBOX_DIR` (default var/outbox)."""
    settings = Settings.from_env()
    return ActionSettings(
        routing_policy_path=settings.routing_policy_path,
        outbox_dir=str(settings.outbox_dir),
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_username=settings.smtp_username,
        smtp_password=_secret("AI_ASSETS_SMTP_PASSWORD", in_dagster),
        smtp_starttls=settings.smtp_starttls,
        webhook_url=_secret("AI_ASSETS_WEBHOOK_URL", in_dagster),  # such URLs often carry a token
        webhook_secret=_secret("AI_ASSETS_WEBHOOK_SECRET", in_dagster),
        max_attempts=settings.outbox_max_attempts,
        base_backoff_s=settings.outbox_base_backoff_s,
        delivery_deadline_s=settings.outbox_deadline_s,
    )


def monitoring_settings_from_env() -> MonitoringSettings:
    settings = Settings.from_env()
    return MonitoringSettings(
        accuracy_margin=settings.accuracy_margin,
        estimate_gap_margin=settings.estimate_gap_margin,
        daily_budget_usd=settings.llm_daily_budget_usd,
        monthly_budget_usd=settings.llm_monthly_budget_usd,
        minutes_per_case=settings.minutes_per_case,
        ui_url=settings.ui_url,
        review_url=settings.review_url,
    )


def build_resources() -> dict[str, object]:
    settings = Settings.from_env()
    return {
        "landing_zone": LandingZone(root=str(settings.landing_dir),
                                    max_file_bytes=settings.max_file_bytes or DEFAULT_MAX_FILE_BYTES),
        "io_manager": ParquetIOManager(base_dir=str(settings.storage_dir)),
        "ingestion_policy": ingestion_policy_from_env(),
        # A PostgreSQL URL may carry a password: through EnvVar it never shows in the UI.
        "ops_database": OpsDatabaseResource(url=EnvVar("AI_ASSETS_OPS_DB_URL") if settings.ops_db_url_is_set
                                            else ops_db_url()),
        "model_serving": model_serving_from_env(),
        "action_settings": action_settings_from_env(),
        "model_training": IntentModelTraining(
            models_dir=str(settings.models_dir),
            encoder=settings.model_encoder,
            rows_per_intent=settings.model_rows_per_intent,
        ),
        "monitoring_settings": monitoring_settings_from_env(),
        "notifier": notifier_from_env(),
    }
