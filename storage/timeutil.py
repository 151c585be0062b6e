"""Time as the database stores it: UTC always; on SQLite, text that sorts in time order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final


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


class UtcTimestamp:
    """A stored instant, UTC, as its ISO-8601 text ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always
    microseconds, always ``Z``): for readers that only pass the time on as text, such as a job
    history page. The SQLite text becomes this by a slice; a `datetime` costs a parse here and
    a format where the text is wanted, ~1 µs a timestamp and two per row. Immutable; equal
    when the instants are (the text is canonical)."""

    __slots__ = ("iso",)

    def __init__(self, iso: str) -> None:
        self.iso: Final = iso

    @classmethod
    def of(cls, value: datetime) -> UtcTimestamp:
        """The timestamp of a `datetime` (naive means UTC)."""
        if value.tzinfo is not None and value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return cls(
            "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"  # noqa: UP031 (a third of strftime's cost)
            % (value.year, value.month, value.day,
               value.hour, value.minute, value.second, value.microsecond)
        )  # fmt: skip

    def to_datetime(self) -> datetime:
        """The aware UTC `datetime`."""
        return datetime.fromisoformat(self.iso)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UtcTimestamp) and other.iso == self.iso

    def __hash__(self) -> int:
        return hash(self.iso)

    def __repr__(self) -> str:
        return f"UtcTimestamp({self.iso!r})"


def as_timestamp(value: object) -> UtcTimestamp | None:
    """A stored timestamp (PostgreSQL datetime or SQLite text) as a `UtcTimestamp`; None
    stays None."""
    return None if value is None else stored_timestamp(value)


def stored_timestamp(value: object) -> UtcTimestamp:
    """`as_timestamp` of a NOT NULL column."""
    if (
        type(value) is str
        and len(value) == _SQLITE_TEXT_LEN
        and value[10] == " "
        and value[19] == "."
    ):
        # `to_sqlite`'s text, whose only space is the separator: the ISO text but for it and
        # the zone. The parse (a tenth of the old round trip to a datetime and back) checks
        # the digits and that no offset follows; any other text takes the general path.
        try:
            naive = _parse(value).tzinfo is None
        except ValueError:
            naive = False
        if naive:
            return UtcTimestamp(value.replace(" ", "T") + "Z")
    parsed = as_datetime(value)
    if parsed is None:
        raise TypeError("not a timestamp: None")
    return UtcTimestamp.of(parsed)


_parse = datetime.fromisoformat
