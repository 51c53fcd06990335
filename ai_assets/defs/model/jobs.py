"""Training is launched by hand (UI or CLI): the training data changes only with a release
of the labelled set or, later, with human corrections."""

from dagster import AssetSelection, define_asset_job

from ai_assets.defs.common import MODEL_GROUP, MODEL_TRAINING_JOB

model_training_job = define_asset_job(
    MODEL_TRAINING_JOB,
    selection=AssetSelection.groups(MODEL_GROUP),
    description="Train a candidate intent model, gate it against production, promote it if it passes.",
)
