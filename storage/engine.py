"""Open the store for a DATABASE_URL: the right driver behind one JobStore.

Only ``serve``, ``worker`` and ``db upgrade`` create or upgrade a database (``create=True``);
every other caller gets a ``StoreUnusable`` (one line, naming the URL) for a missing file,
missing tables, an unreachable server or a schema of another version, and nothing changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from storage.driver import Driver
from storage.errors import (
    UPGRADE_HINT,
    DatabaseMissing,
    SchemaAhead,
    SchemaBehind,
    StoreUnusable,
    classify,
)
from storage.images import convert_inline_images
from storage.migrate import (
    HEAD,
    SchemaState,
    Upgrade,
    inspect_schema,
    known_revisions,
    upgrade,
)
from storage.store import JobStore
from storage.urls import DatabaseUrl, parse_database_url


async def open_driver(url: DatabaseUrl, *, pool_size: int = 10) -> Driver:
    if url.dialect == "sqlite":
        from storage.sqlite import SqliteDriver

        return SqliteDriver(url.path)
    from storage.postgres import PostgresDriver

    driver: Driver = await PostgresDriver.connect(url.dsn, pool_size=pool_size)
    return driver


@asynccontextmanager
async def explained(database_url: str) -> AsyncIterator[None]:
    """Connection failures at start, as the StoreUnusable that says what is wrong."""
    try:
        yield
    except Exception as exc:
        unusable = classify(exc, database_url)
        if unusable is None or unusable is exc:
            raise
        raise unusable from exc


def _parse(database_url: str) -> DatabaseUrl:
    try:
        return parse_database_url(database_url)
    except ValueError as exc:
        raise StoreUnusable(database_url, str(exc)) from None


async def inspect_existing(database_url: str, *, check: bool = False) -> SchemaState:
    """The schema's revision (and with ``check`` its differences from the models) of a
    database that exists and has tables (else DatabaseMissing). Creates nothing: a missing
    SQLite file is not opened, which would create it."""
    url = _parse(database_url)
    if url.dialect == "sqlite" and not await anyio.Path(url.path).exists():
        where = await anyio.Path(url.path).absolute()
        raise DatabaseMissing(database_url, f"there is no file {where}: "
                              f"{UPGRADE_HINT} to create it, or point DATABASE_URL at "
                              "the database")  # fmt: skip
    async with explained(database_url):
        state = await inspect_schema(url, check=check)
    if not state.has_tables:
        raise DatabaseMissing(database_url, f"the database has no tables: {UPGRADE_HINT}")
    return state


async def check_usable(database_url: str) -> None:
    """Raise StoreUnusable unless the database exists at this version's schema."""
    state = await inspect_existing(database_url)
    if state.revision == HEAD:
        return
    if state.revision is not None and state.revision not in known_revisions():
        raise SchemaAhead(database_url, f"the schema is at revision {state.revision}, newer "
                          f"than this version's {HEAD}: run a newer vision-pipeline")  # fmt: skip
    found = state.revision or "0.1.0's (no revision)"
    raise SchemaBehind(database_url, f"the schema is {found}, this version needs {HEAD}: "
                       f"{UPGRADE_HINT}")  # fmt: skip


async def prepare(database_url: str, *, create: bool) -> Upgrade | None:
    """``create``: create or upgrade the schema (None never); else check it (None)."""
    if not create:
        await check_usable(database_url)
        return None
    async with explained(database_url):
        return await upgrade(_parse(database_url), database_url)


async def open_store(database_url: str, *, create: bool = False, pool_size: int = 10) -> JobStore:
    """Connect and return the store. ``create``: create or upgrade the schema first, then
    convert the data: URLs older versions stored; otherwise refuse a database that is not
    at this version's schema (StoreUnusable)."""
    await prepare(database_url, create=create)
    url = _parse(database_url)
    async with explained(database_url):
        store = JobStore(await open_driver(url, pool_size=pool_size))
    if create:  # rows of older versions: their whole data: URLs into the image store
        try:
            await convert_inline_images(store)
        except BaseException:
            await store.driver.close()
            raise
    return store
