"""Layer 2 wiring, training side: a candidate intent model, its promotion gate, the production model."""

from dagster import Definitions

from ai_assets.defs.model.assets import intent_model, production_intent_model
from ai_assets.defs.model.checks import model_checks
from ai_assets.defs.model.jobs import model_training_job

defs = Definitions(assets=[intent_model, production_intent_model], asset_checks=model_checks,
                   jobs=[model_training_job])
