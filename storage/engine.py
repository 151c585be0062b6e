"""Open the store for a DATABASE_URL: the right driver behind one JobStore."""

from __future__ import annotations

from storage.driver import Driver
from storage.images import convert_inline_images
from storage.schema import push
from storage.store import JobStore
from storage.urls import DatabaseUrl, parse_database_url


async def open_driver(url: DatabaseUrl, *, pool_size: int = 10) -> Driver:
    if url.dialect == "sqlite":
        from storage.sqlite import SqliteDriver

        return SqliteDriver(url.path)
    from storage.postgres import PostgresDriver

    driver: Driver = await PostgresDriver.connect(url.dsn, pool_size=pool_size)
    return driver


async def open_store(database_url: str, *, create: bool = True, pool_size: int = 10) -> JobStore:
    """Connect (creating or updating the tables first when ``create``, then converting the
    data: URLs older versions stored) and return the store."""
    url = parse_database_url(database_url)
    if create:
        await push(url)
    store = JobStore(await open_driver(url, pool_size=pool_size))
    if create:  # rows of older versions: their whole data: URLs into the image store
        try:
            await convert_inline_images(store)
        except BaseException:
            await store.driver.close()
            raise
    return store
