"""Training is launched by hand (UI or CLI) or by the retraining sensor (defs/review) once enough
reviewed labels have arrived: the training data changes with a release of the labelled set or
with people's corrections."""

from dagster import AssetSelection, define_asset_job

from ai_assets.defs.common import MODEL_GROUP, MODEL_TRAINING_JOB

model_training_job = define_asset_job(
    MODEL_TRAINING_JOB,
    selection=AssetSelection.groups(MODEL_GROUP),
    description="Snapshot the reviewed labels, train a candidate intent model on the shipped data plus them, "
                "gate it on validation and in shadow against production, promote it if both gates pass.",
)
