"""Cross-process wake-ups for SQLite: a datagram to every process that watches the database.

SQLite has no LISTEN/NOTIFY. Each process whose change feed runs binds a Unix datagram socket
in ``<database>.wake/``; after every commit the writer sends one byte to each socket there
(the list re-read at most every half second; a socket whose process died is removed). A
watcher wakes within microseconds instead of at its next poll, and an idle watcher costs
nothing. Where Unix sockets are missing, or a datagram is lost, the feed's poll of the change
counter still finds the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger("storage.wake")
REFRESH_SECONDS = 0.5


def _wake_dir(database_path: str) -> str | None:
    if database_path == ":memory:" or not hasattr(socket, "AF_UNIX"):
        return None
    return os.path.abspath(database_path) + ".wake"


class Announcer:
    """The writer's side: after a commit, one datagram to every watcher (but this process)."""

    def __init__(self, database_path: str) -> None:
        self.dir = _wake_dir(database_path)
        self._sock: socket.socket | None = None
        self._targets: list[str] = []
        self._listed_at = 0.0
        self.own: str | None = None  # this process's watcher, which is poked in-process

    def announce(self) -> None:
        if self.dir is None:
            return
        now = time.monotonic()
        if now - self._listed_at > REFRESH_SECONDS:
            self._listed_at = now
            try:
                self._targets = [os.path.join(self.dir, n) for n in os.listdir(self.dir)]
            except OSError:
                self._targets = []
        if not self._targets:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        for target in self._targets:
            if target == self.own:
                continue
            try:
                self._sock.sendto(b"!", target)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(target)
                    self._listed_at = 0.0
                # EAGAIN: its queue is full of wake-ups already; nothing is lost.

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


class Watcher:
    """The listening side: a socket whose readability means "something was committed"."""

    def __init__(self, database_path: str) -> None:
        self.path: str | None = None
        self.sock: socket.socket | None = None
        directory = _wake_dir(database_path)
        if directory is None:
            return
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            sock.setblocking(False)
        except OSError as exc:  # a read-only folder, a path too long for a socket name …
            log.info("no cross-process wake-ups (%s); polling only", exc)
            return
        self.path, self.sock = path, sock

    def drain(self) -> None:
        assert self.sock is not None
        with contextlib.suppress(OSError):
            while self.sock.recv(64):
                pass

    def attach(self, loop: object, on_wake: Callable[[], None]) -> None:
        if self.sock is None:
            return

        def readable() -> None:
            self.drain()
            on_wake()

        loop.add_reader(self.sock.fileno(), readable)  # type: ignore[attr-defined]

    def close(self, loop: object) -> None:
        if self.sock is None:
            return
        with contextlib.suppress(Exception):
            loop.remove_reader(self.sock.fileno())  # type: ignore[attr-defined]
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class SqliteListener:
    """The SQLite driver's listener (``storage.driver.Listener``): a ``Watcher`` for other
    processes' datagrams, and a poll of the change counter every ``poll_seconds`` for whatever
    a datagram missed. SQLite has no payload to say a job became claimable, so the feed reads
    its events to know; one writer commits at a time, so ids become visible in order."""

    poll_seconds = 0.1
    tells_pending = False
    ids_in_order = True
    counter_first = True  # the ~20 µs MAX(id) read every poll, rather than an events read

    def __init__(self, database_path: str, announcer: Announcer) -> None:
        self.database_path = database_path
        self.announcer = announcer

    async def listen(
        self,
        wake: Callable[[], None],
        pending: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        loop = asyncio.get_running_loop()
        watcher = Watcher(self.database_path)
        watcher.attach(loop, wake)
        self.announcer.own = watcher.path  # our own commits poke the feed directly
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            watcher.close(loop)
