"""Model serving without Dagster: the tiers, the cascade router and their protections.

`ai_assets.resources.model_serving` configures these from the environment for Dagster.
"""
