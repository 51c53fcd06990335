"""Every ops_db test runs on SQLite (a temporary file) and on PostgreSQL. PostgreSQL: a
fresh database per test module (created and dropped here), and in it a fresh schema per
test, named in the URL's search_path (`?options=-csearch_path=...`), so each test starts
from an empty database without paying for CREATE DATABASE each time. A missing
PostgreSQL server fails the test, never skips it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from ai_assets.ops_db import OpsDb, create_engine_for, upgrade
from ai_assets.ops_db.engine import normalise_url
from ai_assets_tests.conftest import require_postgres

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def pg_module_database() -> Iterator[URL]:
    admin_url = normalise_url(require_postgres())
    name = f"ai_assets_opsdb_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """An empty database as a URL string: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ops.db'}"
        return
    database: URL = request.getfixturevalue("pg_module_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(database, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield database.set(query={"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    eng = create_engine_for(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def ops(engine: Engine) -> OpsDb:
    """The operations database, migrated to head."""
    upgrade(engine)
    return OpsDb(engine)
