"""Running the code location's jobs from the command line against the instance in DAGSTER_HOME.

Used by `ai-assets demo` and `ai-assets backfill`: each day is one run of the same job the
sensor and the schedule launch, recorded in the instance like any run from the UI.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

from ai_assets.defs.common import FRESHNESS_CHECK_KEYS, INGESTION_JOB, LABEL_FEEDBACK_JOB, MODEL_TRAINING_JOB

__all__ = ["INGESTION_JOB", "LABEL_FEEDBACK_JOB", "MODEL_TRAINING_JOB", "RunOutcome", "evaluate_alert_sensor",
           "run_job", "run_partitions", "run_unpartitioned_checks"]
# Step-by-step event logs go to the instance (and the UI); the terminal shows warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunOutcome:
    partition: str | None
    run_id: str
    success: bool


def run_partitions(defs: Definitions, instance: DagsterInstance, days: Iterable[str],
                   tags: dict[str, str] | None = None, job_name: str = INGESTION_JOB) -> list[RunOutcome]:
    """One run of `job_name` per day, in order."""
    job = defs.resolve_job_def(job_name)
    outcomes = []
    for day in days:
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False,
                                        tags=tags or {}, run_config=QUIET_CONSOLE)
        outcomes.append(RunOutcome(day, result.run_id, result.success))
    return outcomes


def run_unpartitioned_checks(defs: Definitions, instance: DagsterInstance) -> RunOutcome:
    """The freshness checks, the way their sensor runs them."""
    job = define_asset_job("asset_wide_checks", selection=AssetSelection.checks(*FRESHNESS_CHECK_KEYS))
    resolved = Definitions.merge(defs, Definitions(jobs=[job])).resolve_job_def("asset_wide_checks")
    result = resolved.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE)
    return RunOutcome(None, result.run_id, result.success)


def run_job(defs: Definitions, instance: DagsterInstance, name: str) -> RunOutcome:
    """One run of an unpartitioned job, e.g. model_training_job."""
    result = defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False,
                                                            run_config=QUIET_CONSOLE)
    return RunOutcome(None, result.run_id, result.success)


def evaluate_alert_sensor(defs: Definitions, instance: DagsterInstance) -> str | None:
    """One tick of `check_alert_sensor`, as the daemon would run it: every check evaluation not
    yet seen becomes an alert (or a resolution) in the operations database and the notifier.
    The cursor is kept in the instance like the daemon's, so a later tick (or `make ui`) goes on
    from here; returns the tick's summary."""
    from dagster import build_sensor_context

    sensor = defs.resolve_sensor_def("check_alert_sensor")
    state_key = "ai_assets/demo_check_alert_cursor"
    cursor = instance.run_storage.get_cursor_values({state_key}).get(state_key)
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                   resources={name: defs.resources[name] for name in ("notifier", "ops_database")})
    result = sensor.evaluate_tick(context)
    if context.cursor:
        instance.run_storage.set_cursor_values({state_key: context.cursor})
    return result.skip_message
