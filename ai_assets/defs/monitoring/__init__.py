"""Layer 4 wiring: quality against late labels, drift, pipeline, cost and business figures, and
the sensors that turn failed checks and runs into alerts."""

from dagster import Definitions

from ai_assets.defs.monitoring.drift import input_drift, prediction_drift
from ai_assets.defs.monitoring.jobs import label_feedback_job
from ai_assets.defs.monitoring.metrics import business_metrics, cost_report, pipeline_metrics
from ai_assets.defs.monitoring.quality import model_quality, quality_estimate, resolved_cases
from ai_assets.defs.monitoring.sensors import check_alert_sensor, resolved_cases_sensor, run_failure_alert_sensor

defs = Definitions(
    assets=[resolved_cases, quality_estimate, model_quality, input_drift, prediction_drift, pipeline_metrics,
            cost_report, business_metrics],
    jobs=[label_feedback_job],
    sensors=[resolved_cases_sensor, check_alert_sensor, run_failure_alert_sensor],
)
