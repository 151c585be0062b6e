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


def as_datetime(value: object) -> datetime | None:
    """A stored timestamp (PostgreSQL datetime or SQLite text) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise TypeError(f"not a timestamp: {value!r}")
