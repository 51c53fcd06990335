"""Layer 2 wiring, serving side: every validated message enriched by the model cascade."""

from dagster import Definitions

from ai_assets.defs.enrichment.assets import enriched_messages
from ai_assets.defs.enrichment.checks import enrichment_checks

defs = Definitions(assets=[enriched_messages], asset_checks=enrichment_checks)
