"""The label-feedback run: a day's resolved cases in, its realised model quality out. Started by
`resolved_cases_sensor` when the feed lands, a day after the messages."""

from dagster import AssetSelection, define_asset_job

from ai_assets.defs.common import LABEL_FEEDBACK_JOB, daily_partitions

label_feedback_job = define_asset_job(
    LABEL_FEEDBACK_JOB,
    selection=AssetSelection.assets("resolved_cases", "quarantined_resolved_cases", "model_quality"),
    partitions_def=daily_partitions,
    description="A day's resolved-cases feed validated, and the day's model quality against it, with its checks.",
)
