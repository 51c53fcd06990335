"""The daily pipeline across the layers: one job per day and the schedule that backs up the sensor."""

from dagster import Definitions

from ai_assets.defs.pipeline.jobs import daily_ingestion_schedule, ingestion_job

defs = Definitions(jobs=[ingestion_job], schedules=[daily_ingestion_schedule])
