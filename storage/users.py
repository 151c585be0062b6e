"""``JobStore``'s methods for users (a base class of it, as ``ImageStore``: one store for
callers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from storage.driver import Driver, Work, fetch_one
from storage.queries import QUERIES
from storage.records import UserRecord
from storage.rows import user_of
from storage.timeutil import utcnow

T = TypeVar("T")


class UserStore:
    driver: Driver

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        raise NotImplementedError  # JobStore's

    async def user_seen(
        self, open_id: str, name: str | None, role: str = "user"
    ) -> tuple[int, str]:
        """Create the user on first sight, else refresh lastSignedIn. Returns (id, role)."""

        def work() -> Work[tuple[int, str]]:
            row = yield fetch_one(QUERIES["upsert_user_seen"], open_id, name, role, utcnow())
            return int(row["id"]), str(row["role"])

        return await self._write(work)

    async def touch_user(
        self, open_id: str, name: str | None, role: str | None = None
    ) -> tuple[int, str] | None:
        """Refresh lastSignedIn (name, and role when given) of a known user: (id, role), or
        None when the openId has no row yet."""

        def work() -> Work[tuple[int, str] | None]:
            row = yield fetch_one(QUERIES["touch_user"], open_id, name, role, utcnow())
            return None if row is None else (int(row["id"]), str(row["role"]))

        return await self.driver.run(work)

    async def upsert_user_login(
        self, open_id: str, name: str | None, email: str | None, login_method: str | None,
        role: str | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        """The template's login upsert (TEMPLATE_FLOWS §1.7). Returns (id, role)."""

        def work() -> Work[tuple[int, str]]:
            row = yield fetch_one(
                QUERIES["upsert_user_login"], open_id, name, email, login_method, role, utcnow()
            )
            return int(row["id"]), str(row["role"])

        return await self.driver.run(work)

    async def get_user(self, user_id: int) -> UserRecord | None:
        row = await self.driver.read(fetch_one(QUERIES["get_user"], user_id))
        return None if row is None else user_of(row)

    async def user_role(self, user_id: int) -> str | None:
        row = await self.driver.read(fetch_one(QUERIES["get_user_role"], user_id))
        return None if row is None else str(row["role"])

    async def set_user_role(self, open_id: str, role: str) -> int:
        def work() -> Work[int]:
            row = yield fetch_one(QUERIES["set_user_role"], open_id, role, utcnow())
            return int(row["id"])

        return await self._write(work)
