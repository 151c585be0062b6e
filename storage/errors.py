"""Why a database cannot be used, as one line an operator can act on.

``open_store`` raises these before anything is created or changed; ``vision-pipeline`` prints
the line and exits 2. Every message names the DATABASE_URL it tried, its password masked.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit, urlunsplit


def mask_url(database_url: str) -> str:
    """The URL with its password replaced by ``***`` (user, host and database kept)."""
    try:
        parts = urlsplit(database_url)
        password = parts.password
    except ValueError:
        return database_url
    if not password:
        return database_url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class StoreUnusable(Exception):
    """The database at ``url`` cannot serve this command; ``str()`` is one line."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = mask_url(url)
        self.problem = " ".join(problem.splitlines())  # one line, whatever a driver said
        super().__init__(f"DATABASE_URL={self.url}: {problem}")


class DatabaseMissing(StoreUnusable):
    """No SQLite file, no PostgreSQL database, or no tables in it."""


class DatabaseUnreachable(StoreUnusable):
    """The server refused the connection, did not answer, or refused our credentials."""


class SchemaBehind(StoreUnusable):
    """The database's schema is older than this version's and may not be upgraded here."""


class SchemaAhead(StoreUnusable):
    """The database's schema was written by a newer version of vision-pipeline."""


UPGRADE_HINT = "run `vision-pipeline db upgrade`"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (SQLAlchemy wraps the driver's error in ``orig``)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return seen


def classify(exc: BaseException, url: str) -> StoreUnusable | None:
    """A connection failure at start as a StoreUnusable (None: not one we can explain)."""
    import asyncpg

    for e in _chain(exc):
        if isinstance(e, StoreUnusable):
            return e
        if isinstance(e, asyncpg.InvalidCatalogNameError):
            return DatabaseMissing(url, f"{e} (create it, e.g. `createdb`, then start again)")
        if isinstance(
            e, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
        ):
            return DatabaseUnreachable(url, f"the server refused the credentials: {e}")
        if isinstance(e, asyncpg.CannotConnectNowError):
            return DatabaseUnreachable(url, f"the server is not accepting connections: {e}")
        if isinstance(e, OSError):
            return DatabaseUnreachable(url, f"cannot connect: {e.strerror or e}")
    for e in _chain(exc):
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in str(e):
            return DatabaseMissing(
                url, f"cannot open the SQLite file: {e} (does its folder exist?)"
            )
    return None
