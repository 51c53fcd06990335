"""Pure business logic. Nothing in this package imports Dagster."""
