"""Time as the database stores it: UTC always; on SQLite, text that sorts in time order."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_sqlite(value: datetime) -> str:
    """The text form SQLAlchemy uses for SQLite DATETIME, in UTC, so both read the same rows."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


# len("YYYY-MM-DD HH:MM:SS.ffffff"): the text `to_sqlite` writes.
_SQLITE_TEXT_LEN = 26


def as_datetime(value: object) -> datetime | None:
    """A stored timestamp (PostgreSQL datetime or SQLite text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == _SQLITE_TEXT_LEN:
            # Our own text, offset-less: parsed as UTC in one call. replace(tzinfo=...) costs
            # 6x the parse (keyword arguments), and a history page reads two per row. Text that
            # already carries an offset cannot take a second one: it takes the general path.
            try:
                return datetime.fromisoformat(value + "+00:00")
            except ValueError:
                pass
        parsed = datetime.fromisoformat(value)
    elif isinstance(value, datetime):
        if value.tzinfo is UTC:
            return value  # asyncpg's timestamptz: already UTC
        parsed = value
    else:
        raise TypeError(f"not a timestamp: {value!r}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
