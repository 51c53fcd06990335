"""Layer 3 wiring: triage, the actions taken in the operations database, outbox delivery and its sweep."""

from dagster import Definitions

from ai_assets.defs.actions.assets import case_actions, outbox_deliveries, triage_decisions
from ai_assets.defs.actions.checks import action_checks
from ai_assets.defs.actions.jobs import outbox_retry_job, outbox_retry_schedule

defs = Definitions(assets=[triage_decisions, case_actions, outbox_deliveries], asset_checks=action_checks,
                   jobs=[outbox_retry_job], schedules=[outbox_retry_schedule])
