"""Layer 4, plain Python: the platform watching itself.

Quality against late labels and its estimate before they arrive, drift with what moved,
pipeline, cost and business figures, the alert rules with their de-duplication, and the
static report. `ai_assets.defs.monitoring` wires it into Dagster; nothing here imports Dagster.
"""
