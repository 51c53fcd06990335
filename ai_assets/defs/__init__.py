"""Dagster definitions, one package per layer; `ai_assets.definitions` assembles them."""
