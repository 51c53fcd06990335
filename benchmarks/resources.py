"""The code location's resources under one scratch directory, as the job benchmarks run it:
files for landing, storage, models and outbox, a SQLite operations database, no LLM."""

from pathlib import Path

from ai_assets.resources import (
    ActionSettings,
    IngestionPolicy,
    IntentModelTraining,
    LandingZone,
    ModelServing,
    MonitoringSettings,
    NotifierResource,
    OpsDatabaseResource,
    ParquetIOManager,
)


def scratch_resources(root: Path) -> dict[str, object]:
    """Every resource the code location's jobs need, all under `root` (ops database: root/ops.db)."""
    return {
        "landing_zone": LandingZone(root=str(root / "landing")),
        "io_manager": ParquetIOManager(base_dir=str(root / "storage")),
        "ingestion_policy": IngestionPolicy(),
        "ops_database": OpsDatabaseResource(url=f"sqlite:///{root / 'ops.db'}"),
        "model_serving": ModelServing(),
        "action_settings": ActionSettings(outbox_dir=str(root / "outbox")),
        "model_training": IntentModelTraining(models_dir=str(root / "models")),
        "monitoring_settings": MonitoringSettings(),
        "notifier": NotifierResource(),
    }
