"""The one Definitions object of the ai_assets code location."""

from collections.abc import Mapping

from dagster import Definitions, in_process_executor

from ai_assets.defs.actions.assets import case_actions, outbox_deliveries, triage_decisions
from ai_assets.defs.actions.checks import action_checks
from ai_assets.defs.actions.jobs import outbox_retry_job, outbox_retry_schedule
from ai_assets.defs.enrichment.assets import enriched_messages
from ai_assets.defs.enrichment.checks import enrichment_checks
from ai_assets.defs.ingestion.assets import raw_messages, validate_messages
from ai_assets.defs.ingestion.checks import freshness_checks, freshness_sensor, partition_checks
from ai_assets.defs.ingestion.sensors import daily_ingestion_schedule, ingestion_job, landing_zone_sensor
from ai_assets.defs.model.assets import intent_model, production_intent_model
from ai_assets.defs.model.checks import model_checks
from ai_assets.defs.model.jobs import model_training_job
from ai_assets.resources import build_resources


def build_defs(resources: Mapping[str, object]) -> Definitions:
    """All definitions with the given resources; tests pass their own, `defs` uses the env's."""
    return Definitions(
        assets=[raw_messages, validate_messages, intent_model, production_intent_model, enriched_messages,
                triage_decisions, case_actions, outbox_deliveries],
        asset_checks=[*partition_checks, *freshness_checks, *model_checks, *enrichment_checks, *action_checks],
        jobs=[ingestion_job, model_training_job, outbox_retry_job],
        schedules=[daily_ingestion_schedule, outbox_retry_schedule],
        sensors=[landing_zone_sensor, freshness_sensor],
        resources=dict(resources),
        # Steps are short pandas work: a process per step (the multiprocess default) costs
        # seconds of imports each. Parallelism comes from one run per partition instead.
        executor=in_process_executor,
    )


defs = build_defs(build_resources())
