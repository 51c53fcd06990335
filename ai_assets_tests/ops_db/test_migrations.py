"""Migrations: empty -> head, idempotent, reversible, safe to run concurrently, and in
agreement with the models (what `alembic check` checks)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, text

from ai_assets.ops_db import Base, create_engine_for, current_revision, head_revision, is_current, upgrade
from ai_assets.ops_db.migrate import check, downgrade, render_item
from ai_assets.ops_db.types import JSON_DOC, Money, UtcDateTime

TABLES = {"model_versions", "model_events", "llm_cache", "llm_usage", "cases", "case_history", "actions",
          "outbox", "deliveries", "audit_log", "review_items", "alerts",
          "reviewers", "login_attempts", "review_decisions"}


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_to_head_and_again(engine):
    assert _tables(engine) == set()
    assert current_revision(engine) is None
    upgrade(engine)
    assert _tables(engine) == TABLES
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # running it again changes nothing and does not fail
    assert current_revision(engine) == head_revision() and is_current(engine)
    assert _tables(engine) == TABLES


def test_upgrade_by_url_owns_and_disposes_its_engine(db_url):
    upgrade(db_url)
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()


def test_models_and_migrations_agree(engine):
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": Base.metadata})
        assert compare_metadata(ctx, Base.metadata) == []
    check(engine)  # `alembic check` through the packaged env.py


def test_autogenerate_writes_frozen_plain_types(engine):
    """A future `make_revision` renders the project's types as plain SQLAlchemy types."""
    upgrade(engine)
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(metadata)
    Table("refunds", metadata, Column("id", Integer, primary_key=True), Column("opened_at", UtcDateTime()),
          Column("refund_usd", Money()), Column("payload", JSON_DOC))
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": metadata})
        code = render_python_code(produce_migrations(ctx, metadata).upgrade_ops, render_item=render_item)
    assert "op.create_table('refunds'" in code
    assert "sa.DateTime(timezone=True)" in code
    assert "sa.Numeric(precision=18, scale=9).with_variant(sa.BigInteger(), 'sqlite')" in code
    assert "sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')" in code
    assert "ai_assets" not in code


def test_downgrade_to_base_and_back(engine):
    upgrade(engine)
    downgrade(engine, "base")
    assert _tables(engine) == set()
    assert current_revision(engine) is None
    upgrade(engine)
    assert _tables(engine) == TABLES


def test_indexes_and_constraints(engine):
    upgrade(engine)
    insp = inspect(engine)
    usage_indexes = {ix["name"]: ix["column_names"] for ix in insp.get_indexes("llm_usage")}
    assert usage_indexes["ix_llm_usage_at"] == ["at"]
    one_production = {ix["name"]: ix for ix in insp.get_indexes("model_versions")}[
        "uq_model_versions_one_production_per_name"]
    assert one_production["unique"] and one_production["column_names"] == ["name"]
    assert {u["name"] for u in insp.get_unique_constraints("model_versions")} == {"uq_model_versions_name_version"}
    assert len(insp.get_foreign_keys("model_events")) == 2


UPGRADE_ON_GO = """
import sys
from ai_assets.ops_db import upgrade
print("ready", flush=True)
sys.stdin.readline()
upgrade(sys.argv[1])
"""


def test_concurrent_upgrades_of_an_empty_database(db_url):
    """Several processes starting at once each run the upgrade: all succeed, and it runs once."""
    url = db_url
    procs = [subprocess.Popen([sys.executable, "-c", UPGRADE_ON_GO, url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:  # all imported and waiting ...
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:  # ... then released together
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert current_revision(url) == head_revision()
    engine = create_engine_for(url)
    try:
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_upgrades_from_threads_of_one_process(db_url):
    engines = [create_engine_for(db_url) for _ in range(3)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(eng):
        try:
            barrier.wait()
            upgrade(eng)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for e in engines:
            e.dispose()


def test_sqlite_engine_settings(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'ops.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    finally:
        engine.dispose()
    assert (tmp_path / "nested" / "dir" / "ops.db").exists()


def test_bare_postgresql_scheme_gets_psycopg2():
    engine = create_engine_for("postgresql://postgres@127.0.0.1:5432/postgres")
    assert engine.dialect.driver == "psycopg2"
    assert engine.pool._pre_ping
    engine.dispose()
    with pytest.raises(ValueError, match="unsupported"):
        create_engine_for("mysql+pymysql://u@localhost/x")


def test_foreign_keys_are_enforced(engine):
    upgrade(engine)
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO model_events (name, from_version, to_version, action, actor, reason, at) "
                          "VALUES (:n, NULL, 7, 'promote', 'a', 'r', :at)"),
                     {"n": "nobody", "at": "2026-01-01 00:00:00"})


def test_ops_db_imports_no_dagster():
    code = "import sys, ai_assets.ops_db, ai_assets.ops_db.migrate; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
