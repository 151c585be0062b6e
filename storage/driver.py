"""The seam between the queue and a database (River's idea: the queue written once, a driver
per database).

A transaction body is a generator that yields ``Statement``s and receives each one's result.
``storage.store`` writes every body once; the SQLite driver drives it synchronously on its
writer thread (so a whole transaction costs one thread hop, and concurrent transactions share
one commit), the PostgreSQL driver drives it with ``await`` on a pooled connection. Nothing
above ``storage`` knows which database it talks to.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus

from storage.queries import Query

T = TypeVar("T")
Row = Mapping[str, Any]
Mode = Literal["all", "one", "rowcount"]


@dataclass(frozen=True, slots=True)
class Statement:
    query: Query
    args: tuple[Any, ...]
    mode: Mode


def fetch_all(query: Query, *args: Any) -> Statement:
    return Statement(query, args, "all")


def fetch_one(query: Query, *args: Any) -> Statement:
    return Statement(query, args, "one")


def execute(query: Query, *args: Any) -> Statement:
    """Run a statement for its effect; the result sent back is the number of rows changed."""
    return Statement(query, args, "rowcount")


# A transaction body: yields statements, gets back rows / a row / a row count, returns T.
Work = Generator[Statement, Any, T]


def single(statement: Statement) -> Work[Any]:
    """A transaction body of one statement."""
    return (yield statement)


class DatabaseUnavailable(Exception):
    """The database could not be reached or stayed locked past the deadline; nothing changed."""


class Listener(Protocol):
    """How a change feed hears of commits made by other processes. Each driver brings its own
    (River's idea): SQLite a wake datagram plus a fast poll of the change counter, PostgreSQL
    LISTEN/NOTIFY plus a slow poll in case the listening connection was away."""

    poll_seconds: float  # how often the feed looks anyway, in case a wake-up was lost
    tells_pending: bool  # its wake-ups say when a job became claimable (NOTIFY's payload)
    ids_in_order: bool  # event ids become visible in id order (one writer): no gap to wait out
    counter_first: bool  # poll the change counter (a primary-key max) before the events

    async def listen(
        self,
        wake: Callable[[], None],
        pending: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: call ``wake`` when another process committed, and ``pending`` when
        (``tells_pending``) a job became claimable; started once it can hear them."""
        ...


class Driver(Protocol):
    dialect: str

    def listener(self) -> Listener:
        """This database's way of hearing other processes' commits (``Listener``)."""
        ...

    async def run(self, work: Callable[[], Work[T]]) -> T:
        """Run ``work()`` in one write transaction; all of it commits or none of it does."""
        ...

    async def write(self, statement: Statement) -> Any:
        """Run one write statement as a transaction of its own (on PostgreSQL without the
        ``BEGIN``/``COMMIT`` round trips: a lone statement is atomic anyway)."""
        ...

    async def read(self, statement: Statement) -> Any:
        """Run one read-only statement outside any transaction."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Try, without waiting, to become the one process of this database doing ``name``
        (housekeeping); yields whether it did, and holds it until the block ends. PostgreSQL:
        a session advisory lock on a connection of its own; SQLite: a file lock beside the
        database. A process that dies lets go with it."""
        ...

    async def reclaim_space(self) -> None:
        """After retention deleted rows: make their space reusable by later rows, whatever the
        server's autovacuum setting (PostgreSQL: a plain ``VACUUM`` of the pruned tables,
        outside any transaction; it blocks no reads or writes). SQLite: nothing to do, freed
        pages go to the file's freelist and are reused."""
        ...

    async def close(self) -> None: ...
