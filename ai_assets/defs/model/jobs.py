"""Training is launched by hand (UI or CLI): the training data changes only with a release
of the labelled set or, later, with human corrections."""

from dagster import AssetSelection, define_asset_job

from ai_assets.defs.model.assets import GROUP

model_training_job = define_asset_job(
    "model_training_job",
    selection=AssetSelection.groups(GROUP),
    description="Train a candidate intent model, gate it against production, promote it if it passes.",
)
