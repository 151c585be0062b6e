"""Versioned migrations (Alembic) under a database-wide lock, and what a database's schema is.

``upgrade`` is safe at every start, by any number of processes at once: the whole upgrade is
one transaction holding PostgreSQL's advisory lock, or SQLite's write lock (``BEGIN
IMMEDIATE``), so the second process waits, then finds the schema at head and does nothing.
A database 0.1.0's ``db push`` made (tables, no ``alembic_version``) is brought to 0.1.0's
schema as that push would have and stamped at the baseline; after the revisions run, what the
check finds missing (a dropped index or trigger) is put back.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage import schemacheck, triggers
from storage.errors import SchemaAhead
from storage.sqlite import enter_wal
from storage.tables import metadata
from storage.urls import DatabaseUrl

# The newest revision this code knows (tests/test_migrations.py checks it is Alembic's head).
HEAD = "0003"
BASELINE = "0001"
# pg_advisory_xact_lock's key (0.1.0's push used the same: an old and a new process starting
# together still take turns).
_LOCK = 0x5649_5350  # "VISP"
# How long a SQLite upgrade waits for another process's write lock (sqlite3's timeout).
_CONNECT_ARGS: dict[str, dict[str, Any]] = {"sqlite": {"timeout": 60}, "postgresql": {}}


@dataclass(frozen=True, slots=True)
class Upgrade:
    before: str | None  # the revision found (None: an empty database)
    after: str
    stamped: bool = False  # a database 0.1.0's push made, recognised
    added: tuple[str, ...] = ()  # columns such a database lacked
    repaired: tuple[str, ...] = ()  # what the check found missing and put back

    @property
    def changed(self) -> bool:
        return self.before != self.after or bool(self.added or self.repaired)


def alembic_config() -> Config:
    """Alembic's configuration in code: the scripts inside the installed package."""
    config = Config()
    config.set_main_option("script_location", str(files("storage") / "migrations"))
    return config


def known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def engine_for(url: DatabaseUrl) -> AsyncEngine:
    engine = create_async_engine(url.sqlalchemy_url(), connect_args=_CONNECT_ARGS[url.dialect])
    if engine.dialect.name == "sqlite":
        _begin_immediate(engine)
    return engine


def _begin_immediate(engine: AsyncEngine) -> None:
    """SQLite: each transaction is ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe; pysqlite would
    run each CREATE on its own), so the whole upgrade holds the write lock."""

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        # WAL from the first connection on, as the driver will use it (see enter_wal).
        cursor = dbapi_connection.cursor()
        enter_wal(cursor.execute)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def current_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _alembic(conn: sa.Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    getattr(command, action)(config, revision)


def _push_0_1_0(conn: sa.Connection) -> list[str]:
    """What 0.1.0's ``db push`` did to a database older than itself: missing tables, columns,
    indexes and triggers added. Never removes anything."""
    metadata().create_all(conn, checkfirst=True)
    added = _add_missing_columns(conn)
    _restore(conn)
    return added


def columns_added_by_revisions() -> set[tuple[str, str]]:
    """(table, column) pairs a revision after the baseline adds: each such revision module lists
    them in ``adds_columns``. Completing a 0.1.0 database adds them too (the current models'
    indexes and triggers need them; such a revision adds only what is missing), but reports only
    the columns 0.1.0 itself had."""
    found: set[tuple[str, str]] = set()
    for script in ScriptDirectory.from_config(alembic_config()).walk_revisions():
        found.update(getattr(script.module, "adds_columns", ()))
    return found


def _add_missing_columns(conn: sa.Connection) -> list[str]:
    inspector = sa.inspect(conn)
    added: list[str] = []
    later = columns_added_by_revisions()
    for table in metadata().sorted_tables:
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            col_type = column.type.compile(dialect=conn.dialect)
            default = ""
            if not column.nullable:
                default = " DEFAULT " + ("FALSE" if isinstance(column.type, sa.Boolean) else "0")
            null = "" if column.nullable else " NOT NULL"
            conn.exec_driver_sql(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" '
                                 f"{col_type}{default}{null}")  # fmt: skip
            if (table.name, column.name) not in later:
                added.append(f"{table.name}.{column.name}")
    return added


def _restore(conn: sa.Connection) -> None:
    """Tables, indexes and triggers the models describe and the database lacks."""
    metadata().create_all(conn, checkfirst=True)
    for table in metadata().sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    for statement in triggers.for_dialect(conn.dialect.name):
        conn.exec_driver_sql(statement)


def _upgrade_locked(conn: sa.Connection, url: str) -> Upgrade:
    before = current_revision(conn)
    stamped = False
    added: tuple[str, ...] = ()
    if before is None and sa.inspect(conn).has_table("visionJobs"):
        added = tuple(_push_0_1_0(conn))
        _alembic(conn, "stamp", BASELINE)
        stamped = True
    elif before is not None and before not in known_revisions():
        raise SchemaAhead(url, f"the schema is at revision {before}, newer than this "
                          f"version's {HEAD}: run a newer vision-pipeline")  # fmt: skip
    _alembic(conn, "upgrade", HEAD)
    missing = [d for d in schemacheck.compare(conn) if d.restorable]
    if missing:
        _restore(conn)
    return Upgrade(before, HEAD, stamped, added, tuple(str(d) for d in missing))


async def upgrade(url: DatabaseUrl, database_url: str = "") -> Upgrade:
    """Bring the database to ``HEAD`` (creating it when empty), under the database-wide lock."""
    engine = engine_for(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
            return await conn.run_sync(_upgrade_locked, database_url or url.path)
    finally:
        await engine.dispose()


@dataclass(frozen=True, slots=True)
class SchemaState:
    revision: str | None
    has_tables: bool
    differences: tuple[schemacheck.Difference, ...] = ()


def _state(conn: sa.Connection, *, check: bool) -> SchemaState:
    revision = current_revision(conn)
    has_tables = sa.inspect(conn).has_table("visionJobs")
    found = tuple(schemacheck.compare(conn)) if check and has_tables else ()
    return SchemaState(revision, has_tables, found)


async def inspect_schema(url: DatabaseUrl, *, check: bool = False) -> SchemaState:
    """The revision and (with ``check``) the differences from the models; changes nothing."""
    engine = create_async_engine(url.sqlalchemy_url(), connect_args=_CONNECT_ARGS[url.dialect])
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: _state(c, check=check))
    finally:
        await engine.dispose()
