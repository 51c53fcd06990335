"""Model serving without Dagster: the tiers, the model cascade and their protections.

`ai_assets.resources.model_serving` configures these from the environment for Dagster.
"""
