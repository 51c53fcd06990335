"""Engines and transactions for the operations database.

`create_engine_for(url)` gives an Engine configured for the dialect:

- SQLite (the embedded default): WAL journal (readers never block the writer), foreign
  keys on, a busy timeout so concurrent writers wait instead of failing, and SQLAlchemy's
  recipe for real transactions: pysqlite's own implicit BEGIN is switched off and the
  engine emits BEGIN itself, so reads are consistent and SAVEPOINTs work. Write
  transactions (`Sessions.write`) begin IMMEDIATE: they take the write lock up front, so
  two processes that read then write serialise instead of dead-ending in SQLITE_BUSY.
- PostgreSQL (production): psycopg2 with `pool_pre_ping`, so a restarted server costs a
  reconnect, not a failed step; a 10 s connect timeout and TCP keepalives, so an unreachable
  one fails the step instead of hanging it. A bare `postgresql://` URL is given the psycopg2 driver:
  SQLAlchemy 2.1 maps it to psycopg 3, which this project does not install.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from ai_assets.config import ops_db_url

SQLITE_BUSY_TIMEOUT_S = 30.0
_BEGIN_OPTION = "ops_db_sqlite_begin"
_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}


def default_url() -> str:
    """`AI_ASSETS_OPS_DB_URL`, else a SQLite file `ops.db` in `AI_ASSETS_DATA_DIR` (default ./var)."""
    return ops_db_url()


def normalise_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def create_engine_for(url: str | URL, **kwargs) -> Engine:
    """An Engine for the operations database at `url` (SQLite file or PostgreSQL)."""
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _install_sqlite_hooks(engine, wal=path is not None)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        # A server that vanishes without a reset (a dropped network, a dead host) must fail the
        # step in seconds, not hang it for the kernel's TCP timeout: bounded connect, keepalives.
        connect_args = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                        "keepalives_count": 3, **kwargs.pop("connect_args", {})}
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    raise ValueError(f"unsupported operations database {parsed.render_as_string(hide_password=True)}: "
                     "use sqlite:///PATH or postgresql+psycopg2://...")


def _install_sqlite_hooks(engine: Engine, wal: bool) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Autocommit at the driver level: the "begin" hook below emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                _switch_to_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        if mode not in _BEGIN_MODES:
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _switch_to_wal(cursor) -> None:
    """WAL is a property of the file: set once, it stays. Switching needs an exclusive lock
    and SQLite answers a contended switch with SQLITE_BUSY at once (the busy timeout does
    not apply), which processes opening a new database together would otherwise hit."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions begin IMMEDIATE on SQLite (a no-op elsewhere)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    return engine


class Sessions:
    """Read and write sessions on one Engine. Each `with` block is one transaction:
    committed when the block ends, rolled back if it raises."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write.begin() as session:
            yield session
