"""What monitoring judges against: margins, budgets and the business constants, from
`ai_assets.config` (AI_ASSETS_ACCURACY_MARGIN, ..._MINUTES_PER_CASE)."""

from dagster import ConfigurableResource


class MonitoringSettings(ConfigurableResource):
    """Thresholds of the layer-4 checks and figures. The model's own targets (its validation
    accuracy and target precision) come from the registry, not from here."""

    accuracy_margin: float = 0.05
    estimate_gap_margin: float = 0.05
    daily_budget_usd: float = 20.0
    monthly_budget_usd: float = 400.0
    minutes_per_case: float = 6.0
    ui_url: str = "http://127.0.0.1:3000"
    review_url: str = "http://127.0.0.1:8787"  # the review app, for links in overdue-item alerts
