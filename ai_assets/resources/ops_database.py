"""The operations database as a Dagster resource: one URL, migrated on first use."""

from functools import lru_cache

from dagster import ConfigurableResource

from ai_assets.ops_db import OpsDb


@lru_cache(maxsize=8)
def _open(url: str) -> OpsDb:
    # One engine (connection pool) per URL and process; the schema is upgraded on first open.
    return OpsDb.open(url)


class OpsDatabaseResource(ConfigurableResource):
    """SQLite file by default, PostgreSQL in production (`AI_ASSETS_OPS_DB_URL`)."""

    url: str

    def db(self) -> OpsDb:
        return _open(self.url)
