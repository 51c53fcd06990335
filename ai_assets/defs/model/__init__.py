"""Layer 2 wiring, training side (and layer 5's learning loop): the reviewed labels, a candidate
intent model trained on the shipped data plus them, its two blocking gates (validation, shadow
traffic), the production model."""

from dagster import Definitions

from ai_assets.defs.model.assets import intent_model, production_intent_model, training_data
from ai_assets.defs.model.checks import model_checks
from ai_assets.defs.model.jobs import model_training_job
from ai_assets.defs.model.shadow_evaluation import shadow_evaluation

defs = Definitions(assets=[training_data, intent_model, shadow_evaluation, production_intent_model],
                   asset_checks=model_checks, jobs=[model_training_job])
