"""ai_assets: a Dagster code location that runs a bank's support-inbox AI in production."""
