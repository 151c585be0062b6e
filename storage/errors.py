"""Why a database cannot be used, as one line an operator can act on.

``open_store`` raises these before anything is created or changed; ``vision-pipeline`` prints
the line and exits 2. Every message names the DATABASE_URL it tried, its password masked.
"""

from __future__ import annotations

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
        self.problem = problem
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
