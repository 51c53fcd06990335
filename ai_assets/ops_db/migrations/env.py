"""Alembic environment: run by ai_assets.ops_db.migrate with a Config built in code."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from ai_assets.ops_db.engine import create_engine_for, normalise_url, writer
from ai_assets.ops_db.migrate import PG_MIGRATION_LOCK_KEY, render_item
from ai_assets.ops_db.tables import Base

config = context.config
target_metadata = Base.metadata


OPTIONS = dict(
    render_item=render_item,
    target_metadata=target_metadata,
    compare_type=True,
    # SQLite cannot ALTER most things: later migrations rebuild tables in batch mode.
    render_as_batch=True,
)


def run_offline() -> None:
    """`alembic upgrade --sql`: print the DDL for a DBA instead of running it."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    context.configure(url=normalise_url(url), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = config.attributes.get("engine")
    owned = engine is None
    if owned:
        url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no database: pass a URL or an Engine to ai_assets.ops_db.migrate")
        engine = create_engine_for(url)
    try:
        # One transaction for the whole upgrade; on SQLite it begins IMMEDIATE (write lock
        # first, so a concurrent upgrade waits and then finds nothing left to do).
        with writer(engine).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
            context.configure(connection=connection, **OPTIONS)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
