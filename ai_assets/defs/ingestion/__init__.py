"""Layer 1 wiring: landing files to validated messages, with quarantine, checks and sensors."""

from dagster import Definitions

from ai_assets.defs.ingestion.assets import raw_messages, validate_messages
from ai_assets.defs.ingestion.checks import freshness_checks, freshness_sensor, partition_checks
from ai_assets.defs.ingestion.sensors import landing_zone_sensor

defs = Definitions(
    assets=[raw_messages, validate_messages],
    asset_checks=[*partition_checks, *freshness_checks],
    sensors=[landing_zone_sensor, freshness_sensor],
)
