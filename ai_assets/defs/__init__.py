"""Dagster definitions, one package per area. Each area declares its own objects as `defs`;
`ai_assets.definitions` merges every area it finds here, so a new area needs no edit elsewhere.
Areas never import each other: what they share is in `common`."""
