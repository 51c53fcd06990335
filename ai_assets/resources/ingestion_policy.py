"""Thresholds an operator tunes for layer 1, in one resource so the UI shows them per run."""

from dagster import ConfigurableResource

from ai_assets.schemas import MAX_TEXT_CHARS


class IngestionPolicy(ConfigurableResource):
    # A day whose quarantined share exceeds this stops downstream assets (blocking check).
    quarantine_ceiling: float = 0.20
    # Volume check: today's rows must lie within [low, high] x the trailing median.
    volume_low: float = 0.4
    volume_high: float = 2.5
    trailing_days: int = 7
    max_text_chars: int = MAX_TEXT_CHARS
