"""Layer 5 wiring: reviewers' decisions applied by a run a sensor starts, overdue items raised
to the senior queue, and retraining once enough reviewed labels have arrived."""

from dagster import Definitions

from ai_assets.defs.review.decisions import review_actions, review_actions_job, review_decisions_sensor
from ai_assets.defs.review.escalation import review_escalation_sensor
from ai_assets.defs.review.retraining import retraining_sensor

defs = Definitions(assets=[review_actions], jobs=[review_actions_job],
                   sensors=[review_decisions_sensor, review_escalation_sensor, retraining_sensor])
