"""DATABASE_URL in the SQLAlchemy forms users write, with or without the driver name."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "sqlite:///vision-pipeline.db"


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    dialect: str  # "sqlite" | "postgresql"
    path: str  # SQLite file path (":memory:" allowed); empty for PostgreSQL
    dsn: str  # asyncpg DSN for PostgreSQL; empty for SQLite

    def sqlalchemy_url(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite+aiosqlite:///{self.path}"
        return "postgresql+asyncpg://" + self.dsn.split("://", 1)[1]


def parse_database_url(url: str) -> DatabaseUrl:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {url!r}")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy reads them.
        path = unquote(urlsplit(url).path)
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ValueError("DATABASE_URL for SQLite needs a file path: sqlite:///jobs.db")
        return DatabaseUrl("sqlite", path, "")
    if base in ("postgresql", "postgres"):
        return DatabaseUrl("postgresql", "", "postgresql://" + rest)
    raise ValueError(f"unsupported database {scheme!r}: use sqlite:///FILE or postgresql://…")
